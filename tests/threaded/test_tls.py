"""Mutual TLS like gear: addServer(host, port, key, cert, ca); CERT_REQUIRED, no host check."""

from __future__ import annotations

import datetime
import logging
import socket
import ssl
import threading
from pathlib import Path

import pytest

import gear
from gear import constants
from gear.protocol.packets import Decoder, Frame, response

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_cert(tmp: Path, cn: str, issuer_cn: str, issuer_key: ec.EllipticCurvePrivateKey | None,
                ca: bool = False) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key or key, hashes.SHA256())
    )
    (tmp / f"{cn}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / f"{cn}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return key


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    root = _write_cert(tmp_path, "root", "root", None, ca=True)
    for cn in ("server", "client", "worker"):
        _write_cert(tmp_path, cn, "root", root)
    return tmp_path


class TLSServer:
    """A minimal Gearman server over mutual TLS, in a thread, on 127.0.0.1 port 0.

    Debian's gearmand is built without TLS (it reads a ClientHello as bad magic), so this
    plays the server: ECHO_REQ -> ECHO_RES; SUBMIT_JOB -> JOB_CREATED, a 100 kB WORK_DATA (many
    TLS records) and WORK_COMPLETE. It records the client certificate's common name.
    """

    def __init__(self, certs: Path) -> None:
        ctx = gear.create_ssl_context(server_side=True)
        ctx.load_cert_chain(str(certs / "server.crt"), str(certs / "server.key"))
        ctx.load_verify_locations(str(certs / "root.crt"))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.ctx = ctx
        self.peer_cn: str | None = None
        self.version: str | None = None
        self.handshake_error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        raw, _ = self.listener.accept()
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.handshake_error = e  # the client refused us (untrusted CA test)
            raw.close()
            return
        with conn:
            self.version = conn.version()
            subject = dict(x[0] for x in conn.getpeercert()["subject"])
            self.peer_cn = subject["commonName"]
            decoder = Decoder()
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                for frame in decoder.feed(data):
                    assert isinstance(frame, Frame)
                    if frame.ptype == constants.ECHO_REQ:
                        conn.sendall(response(constants.ECHO_RES, frame.body))
                    elif frame.ptype == constants.SUBMIT_JOB:
                        conn.sendall(
                            response(constants.JOB_CREATED, b"H:tls:1")
                            + response(constants.WORK_DATA, b"H:tls:1", b"x" * 100000)
                            + response(constants.WORK_COMPLETE, b"H:tls:1", frame.args()[2])
                        )


def test_mutual_tls_client(certs: Path) -> None:
    server = TLSServer(certs)
    client = gear.Client("client")
    try:
        client.addServer("127.0.0.1", server.port, str(certs / "client.key"),
                         str(certs / "client.crt"), str(certs / "root.crt"))
        client.waitForServer(10)
        conn = client.active_connections[0]
        assert conn.use_ssl
        assert conn.echo(b"over tls", timeout=5) == b"over tls"
        job = gear.Job("tls", b"secret")
        client.submitJob(job)
        assert job.wait(10)
        assert job.data == [b"x" * 100000, b"secret"]
        assert server.peer_cn == "client"
        assert server.version == "TLSv1.3"  # gear disabled TLS 1.3; we do not
    finally:
        client.shutdown()
        server.listener.close()


def test_tls_rejects_untrusted_server(certs: Path, tmp_path_factory: pytest.TempPathFactory
                                      ) -> None:
    other = tmp_path_factory.mktemp("other")
    _write_cert(other, "root", "root", None, ca=True)  # a different CA with the same name
    server = TLSServer(certs)
    try:
        conn = gear.Connection("127.0.0.1", server.port, str(certs / "client.key"),
                               str(certs / "client.crt"), str(other / "root.crt"))
        with pytest.raises(gear.ConnectionError):
            conn.connect()
        server.thread.join(5)
        assert server.handshake_error is not None
    finally:
        server.listener.close()


def test_partial_tls_settings_warn_that_the_connection_is_plaintext(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gear.Connection"):
        conn = gear.Connection("127.0.0.1", 4730, ssl_key="key.pem", ssl_cert="cert.pem")
    assert not conn.use_ssl
    assert "NOT encrypted" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gear.Connection"):
        gear.Connection("127.0.0.1", 4730)
    assert caplog.text == ""


class _Records(logging.Handler):
    """Sets ``seen`` when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.text in message:
            self.messages.append(message)
            self.seen.set()


def test_a_certificate_the_server_refuses_is_named(
    certs: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Issue 15 (c): a mutual-TLS server (TLS 1.3) that refuses our certificate just closes the
    # connection after the handshake; the client says why instead of "connection lost".
    other = tmp_path_factory.mktemp("other-ca")
    other_root = _write_cert(other, "root", "root", None, ca=True)
    _write_cert(other, "client", "root", other_root)  # signed by a CA the server does not trust
    server = gear.Server(0, host="127.0.0.1", ssl_key=str(certs / "server.key"),
                         ssl_cert=str(certs / "server.crt"), ssl_ca=str(certs / "root.crt"))
    records = _Records("refused this client's TLS certificate")
    log = logging.getLogger("gear.Connection")
    log.addHandler(records)
    client = gear.Client("client")
    try:
        client.addServer("127.0.0.1", int(server.port), str(other / "client.key"),
                         str(other / "client.crt"), str(certs / "root.crt"))
        assert records.seen.wait(10)
        assert "ssl_cert" in records.messages[0]
    finally:
        log.removeHandler(records)
        client.shutdown()
        server.shutdown()

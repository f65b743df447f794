"""TLS in the network layer: mutual TLS (gear's model), server-only TLS, refusals, the CN.

Certificates are generated per test session with ``cryptography`` (a throwaway CA, a server
certificate for 127.0.0.1/localhost, client certificates from that CA and from another CA).
:func:`make_pki` is also used by the compat, CLI and interop TLS tests.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gear.errors import ConfigurationError
from gear.server.network import build_ssl_context
from tests.server.test_network import LOOPS, open_conn, run, serving


@dataclass
class PKI:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str  # CN "worker1", signed by ``ca``
    client_key: str
    other_ca: str
    rogue_cert: str  # CN "worker1", signed by ``other_ca``
    rogue_key: str


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert: Any = None, key: Any = None) -> str:
    from cryptography.hazmat.primitives import serialization

    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return str(path)


def _cert(subject_cn: str, key: Any, issuer: tuple[str, Any] | None, *, ca: bool = False,
          server: bool = False) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    issuer_name, issuer_key = (
        (x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]), issuer[1])
        if issuer
        else (name, key)
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> PKI:
    """A CA, a server certificate and client certificates (good and rogue) under ``directory``."""
    ca_key, other_key = _key(), _key()
    ca = _cert("geartrain test CA", ca_key, None, ca=True)
    other = _cert("some other CA", other_key, None, ca=True)
    server_key, client_key, rogue_key = _key(), _key(), _key()
    server = _cert("localhost", server_key, ("geartrain test CA", ca_key), server=True)
    client = _cert("worker1", client_key, ("geartrain test CA", ca_key))
    rogue = _cert("worker1", rogue_key, ("some other CA", other_key))
    d = directory
    return PKI(
        ca=_write(d / "ca.pem", cert=ca),
        server_cert=_write(d / "server.pem", cert=server),
        server_key=_write(d / "server.key", key=server_key),
        client_cert=_write(d / "client.pem", cert=client),
        client_key=_write(d / "client.key", key=client_key),
        other_ca=_write(d / "other-ca.pem", cert=other),
        rogue_cert=_write(d / "rogue.pem", cert=rogue),
        rogue_key=_write(d / "rogue.key", key=rogue_key),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_context(pki: PKI, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca)
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


async def whoami(reader: Any, writer: Any) -> bytes:
    writer.write(b"whoami\n")
    return bytes(await asyncio.wait_for(reader.readline(), 5))


async def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """True if a TLS client with ``ctx`` cannot get an answer (handshake or first read fails)."""
    try:
        reader, writer = await open_conn(port, ssl=ctx)
        reply = await whoami(reader, writer)
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        return True
    writer.close()
    return reply == b""


@LOOPS
def test_mutual_tls_passes_the_client_cn_to_the_broker(pki: PKI, loop_kind: str) -> None:
    async def main() -> None:
        async with serving(ssl_key=pki.server_key, ssl_cert=pki.server_cert, ssl_ca=pki.ca) as srv:
            reader, writer = await open_conn(
                srv.port, ssl=client_context(pki, pki.client_cert, pki.client_key)
            )
            assert await whoami(reader, writer) == b"127.0.0.1 worker1\n"
            writer.close()

    run(main(), loop_kind)


@LOOPS
def test_mutual_tls_refuses_clients_without_a_certificate_or_from_another_ca(
    pki: PKI, loop_kind: str
) -> None:
    async def main() -> None:
        async with serving(ssl_key=pki.server_key, ssl_cert=pki.server_cert, ssl_ca=pki.ca) as srv:
            assert await refused(srv.port, client_context(pki))
            assert await refused(srv.port, client_context(pki, pki.rogue_cert, pki.rogue_key))
            # Nobody got a peer in the broker with a subject, and a good client still works.
            reader, writer = await open_conn(
                srv.port, ssl=client_context(pki, pki.client_cert, pki.client_key)
            )
            assert await whoami(reader, writer) == b"127.0.0.1 worker1\n"
            writer.close()

    run(main(), loop_kind)


@LOOPS
def test_server_only_tls_needs_no_client_certificate(pki: PKI, loop_kind: str) -> None:
    async def main() -> None:
        async with serving(ssl_key=pki.server_key, ssl_cert=pki.server_cert) as srv:
            reader, writer = await open_conn(srv.port, ssl=client_context(pki))
            assert await whoami(reader, writer) == b"127.0.0.1 None\n"
            writer.close()
            # Plaintext on a TLS port gets nothing back and does not hurt the server.
            r2, w2 = await open_conn(srv.port)
            w2.write(b"whoami\n")
            assert await asyncio.wait_for(r2.read(), 15) == b""
            reader, writer = await open_conn(srv.port, ssl=client_context(pki))
            assert await whoami(reader, writer) == b"127.0.0.1 None\n"
            writer.close()

    run(main(), loop_kind)


def test_a_silent_client_does_not_block_other_handshakes(pki: PKI) -> None:
    async def main() -> None:
        async with serving(ssl_key=pki.server_key, ssl_cert=pki.server_cert, ssl_ca=pki.ca) as srv:
            _silent_r, silent_w = await open_conn(srv.port)  # TCP only, never says hello
            reader, writer = await open_conn(
                srv.port, ssl=client_context(pki, pki.client_cert, pki.client_key)
            )
            assert await whoami(reader, writer) == b"127.0.0.1 worker1\n"
            writer.close()
            silent_w.close()

    run(main())


def test_tls_configuration_errors_are_reported(pki: PKI, tmp_path: Path) -> None:
    assert build_ssl_context(None, None, None) is None
    with pytest.raises(ConfigurationError, match="key and a certificate"):
        build_ssl_context(None, None, pki.ca)
    with pytest.raises(ConfigurationError, match="key and a certificate"):
        build_ssl_context(pki.server_key, None, None)
    with pytest.raises(ConfigurationError, match="cannot load"):
        build_ssl_context(str(tmp_path / "missing.key"), pki.server_cert, None)
    ctx = build_ssl_context(pki.server_key, pki.server_cert, pki.ca)
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED

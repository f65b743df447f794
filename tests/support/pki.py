"""The one certificate factory of the server tests: a throwaway PKI made with ``cryptography``.

:func:`make_pki` writes a CA, a server certificate for 127.0.0.1/localhost, a client
certificate from that CA (CN "worker1") and a rogue one with the same CN from another CA.
Used by the network TLS, ``gear.Server``, CLI and interop tests. (tests/aio/certs.py and
tests/threaded/test_tls.py keep factories of their own.)
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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

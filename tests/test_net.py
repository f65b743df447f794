"""gear.net: the client-side TLS context and TCP options both front-ends use."""

from __future__ import annotations

import socket
import ssl

from gear import net


def test_client_context_is_gears_mutual_tls() -> None:
    context = net.client_tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert not context.check_hostname  # servers are addressed by IP (gear's rule)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version in (ssl.TLSVersion.MAXIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_3)
    assert net.tls_context(server_side=True).protocol == ssl.PROTOCOL_TLS_SERVER


def test_tcp_options_and_their_application() -> None:
    assert net.tcp_options() == [net.NODELAY]
    options = net.tcp_options(True, 61, 17, 4)
    assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in options
    with socket.socket() as tcp:
        net.apply_tcp_options(tcp, options)
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 17
    a, b = socket.socketpair()  # AF_UNIX: no TCP options, and no error
    with a, b:
        net.apply_tcp_options(a, options)
        net.set_nodelay(a)
    net.set_nodelay(object())  # a test double without setsockopt


def test_tls_refusal_reasons() -> None:
    alert = ssl.SSLError(1, "alert")
    alert.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"  # type: ignore[misc]
    assert "the server said TLSV13_ALERT_CERTIFICATE_REQUIRED" in str(
        net.tls_refusal(alert, handshake_done=True))
    assert "during the handshake" in str(net.tls_refusal(ssl.SSLEOFError(), handshake_done=False))
    assert "right after the handshake" in str(net.tls_refusal(None, handshake_done=True))
    # Not a refusal: our own check of the server's certificate, or a plain network error.
    assert net.tls_refusal(ssl.SSLCertVerificationError(), handshake_done=False) is None
    assert net.tls_refusal(ConnectionRefusedError(), handshake_done=False) is None
    assert net.tls_refusal(TimeoutError(), handshake_done=True) is None

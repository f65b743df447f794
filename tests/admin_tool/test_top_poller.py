"""StatusPoller, what ``gear-admin top`` polls with: status over one reconnecting connection,
plain or TLS, and a failure that names its reason."""

from __future__ import annotations

import socket

import pytest

from gear.admin_tool.connection import AdminError, TlsFiles
from gear.admin_tool.top import StatusPoller
from gear.protocol.admin import FunctionStatus
from tests.admin_tool.conftest import submit_background
from tests.support.peers import GeardProcess


def test_polls_reconnect_after_the_server_restarts(geard: GeardProcess) -> None:
    poller = StatusPoller("127.0.0.1", str(geard.port), 5.0, None)
    client, _ = submit_background(geard.port, b"one")
    assert poller.poll() == [FunctionStatus(b"one", 1, 0, 0)]
    assert poller.version.startswith("0.")
    client.close()
    geard.restart()  # same port; the memory queue starts empty
    with pytest.raises(AdminError):
        poller.poll()  # the old connection is gone: this poll fails and closes it
    assert poller.sock is None
    assert poller.poll() == []  # and the next one connects again
    poller.close()


def test_polls_over_mutual_tls(tmp_path) -> None:
    from tests.support.pki import make_pki

    pki = make_pki(tmp_path)
    server = GeardProcess("--queue", "memory", "-l", "none", "--ssl-ca", pki.ca,
                          "--ssl-cert", pki.server_cert, "--ssl-key", pki.server_key)
    try:
        poller = StatusPoller("127.0.0.1", str(server.port), 5.0,
                              TlsFiles(pki.ca, pki.client_cert, pki.client_key))
        assert poller.poll() == []
        poller.close()
        bad = StatusPoller("127.0.0.1", str(server.port), 5.0,
                           TlsFiles(str(tmp_path / "missing.pem"), None, None))
        with pytest.raises(AdminError, match="Error loading CA file"):
            bad.poll()
    finally:
        server.stop()


def test_a_silent_server_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        poller = StatusPoller("127.0.0.1", str(silent.getsockname()[1]), 0.2, None)
        with pytest.raises(AdminError, match=r"no reply within 0.2s"):
            poller.poll()

"""The live page (``GET /``) in a real headless Chromium: its numbers follow the server.

Debian's ``chromium`` and ``chromium-driver`` drive it through ``selenium``; a missing browser
skips (fails under ``GEAR_REQUIRE_INTEROP=1``, as CI runs). Every wait is a WebDriverWait
with a deadline on what the page shows, never a sleep.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from gear import constants as c
from gear.protocol.packets import request
from tests.server.harp.conftest import LiveServer
from tests.support.peers import missing_peer
from tests.support.raw import connect, read_packet

pytestmark = pytest.mark.interop

#: Chromium's switches: headless, nothing in the background, a fresh profile (added below).
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,900")


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        missing_peer("chromium / chromedriver are not installed (Debian: chromium, "
                     "chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="geard-page-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium  # type: ignore[assignment]
    for arg in (*CHROMIUM_ARGS, f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_page_follows_the_server_live(browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = LiveServer(http_port=0)
    client = worker = None
    try:
        browser.get(f"http://127.0.0.1:{server.server.http_port}/")
        wait = WebDriverWait(browser, 15)

        def text(element_id: str) -> str:
            return str(browser.find_element(By.ID, element_id).text)

        wait.until(lambda _: text("state") == "live")
        assert text("total-jobs_submitted") == "0"
        assert browser.title == "geard status"

        client = connect(server.port)
        client.sendall(b"".join(request(c.SUBMIT_JOB_BG, b"page.f", b"", b"%d" % i)
                                for i in range(7)))
        for _ in range(7):
            assert read_packet(client)[0] == c.JOB_CREATED
        wait.until(lambda _: text("total-jobs_submitted") == "7")
        assert text("total-waiting") == "7"
        row = wait.until(lambda d: next((r for r in d.find_elements(
            By.CSS_SELECTOR, "#functions tr") if r.text.startswith("page.f")), None))
        assert row.text.split() == ["page.f", "7", "0", "7", "0", "7", "0", "0"]

        worker = connect(server.port)
        worker.sendall(request(c.SET_CLIENT_ID, b"page-worker") + request(c.CAN_DO, b"page.f"))
        for _ in range(3):
            worker.sendall(request(c.GRAB_JOB_UNIQ))
            ptype, args = read_packet(worker)
            assert ptype == c.JOB_ASSIGN_UNIQ
            worker.sendall(request(c.WORK_COMPLETE, args[0], b""))
        worker.sendall(request(c.GRAB_JOB_UNIQ))  # one more, held running
        assert read_packet(worker)[0] == c.JOB_ASSIGN_UNIQ
        wait.until(lambda _: text("total-jobs_completed") == "3")
        wait.until(lambda _: text("total-running") == "1")
        assert text("total-waiting") == "3" and text("total-workers") == "1"
        assert "page-worker" in text("workers")
        # The chart has drawn the completions as a line.
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart polyline"))
    finally:
        for sock in (client, worker):
            if sock is not None:
                sock.close()
        server.stop()

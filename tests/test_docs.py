"""Every code example in README.md and docs/*.md runs as shown.

Each fenced block is taken from the markdown as written. ``python`` blocks run in a subprocess
against a test server on a free port (``4730`` in the code is rewritten to that port); ``sh``
blocks run with bash, ``geard`` being this checkout's. Blocks in any other language (``text``,
``console``, ``ini``, ``toml``...) are not run. An HTML comment on the line before a block says
how to run it, visibly in the markdown:

* ``<!-- fragment: why -->``: not run (a python fragment must still compile);
* ``<!-- runs with: the example worker -->``: a worker serving ``reverse``, ``resize`` and
  ``explode`` as the docs/aio.md worker does is connected to the server first;
* ``<!-- runs with: a harp port -->``: the server is a geard with a harp port (docs/harp.md),
  ``3502`` in the code being rewritten to that port (and ``4730`` to its Gearman port);
* ``<!-- runs until stopped: serves reverse -->``: a worker or server that runs until it is
  stopped: once a ``reverse`` job it served came back right, it gets SIGTERM;
* ``<!-- runs until listening -->``: an sh block starting geard: it must listen, then SIGTERM;
* ``<!-- file: NAME -->``: the block is written to NAME in the directory the doc's later
  blocks run in (a config file an sh block then uses).

No marker: the block runs as is and must exit 0 within the timeout.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import gear
from gear import aio
from tests.support.peers import listening_ports, wait_for

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:^<!--\s*(?P<marker>[\w ]+?)\s*(?::\s*(?P<arg>.*?))?\s*-->\n)?"
                   r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```\s*$", re.M | re.S)
RUN = {"python", "sh"}
MARKERS = {"fragment", "runs with", "runs until stopped", "runs until listening", "file"}
TIMEOUT = 60


@dataclass
class Block:
    doc: Path
    line: int
    lang: str
    code: str
    marker: str | None
    arg: str | None

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start("lang")) + 1
            found.append(Block(doc, line, m.group("lang"), m.group("code"), m.group("marker"),
                               m.group("arg")))
    return found


ALL = blocks()


def test_the_markers_are_known_and_the_blocks_found() -> None:
    assert len([b for b in ALL if b.lang == "python"]) >= 10
    for block in ALL:
        assert block.marker is None or block.marker in MARKERS, block.id
        if block.marker == "runs with":
            assert block.arg in ("the example worker", "a harp port"), block.id


def _serve_example_worker(port: int, ready: threading.Event, stop: threading.Event) -> None:
    """The docs/aio.md worker's functions, on their own event loop (a thread)."""

    async def main() -> None:
        worker = aio.Worker(client_id="docs-harness")
        worker.add_server("127.0.0.1", port)

        @worker.function("reverse")
        async def reverse(job: aio.WorkerJob) -> bytes:
            await job.send_status(1, 2)
            await job.send_data(b"half way")
            return job.arguments[::-1]

        @worker.function("resize")
        async def resize(job: aio.WorkerJob) -> bytes:
            return b"resized " + job.arguments

        @worker.function("explode")
        async def explode(job: aio.WorkerJob) -> bytes:
            raise ValueError("no such image")

        await worker.start(concurrency=8)
        await worker.wait_for_server(timeout=10)
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        await worker.stop(drain=False)

    asyncio.run(main())


@pytest.fixture
def server() -> Iterator[gear.Server]:
    srv = gear.Server(0, host="127.0.0.1")
    try:
        yield srv
    finally:
        srv.shutdown()


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return dict(os.environ, PATH=path,
                PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))


def _command(block: Block, port: int, harp_port: int | None = None) -> list[str]:
    code = block.code.replace("4730", str(port))
    if harp_port is not None:
        code = code.replace("3502", str(harp_port))
    if block.lang == "python":
        return [sys.executable, "-c", code]
    return ["bash", "-euc", code]


def _reverse_round_trip(port: int) -> bool:
    async def main() -> bytes:
        async with aio.Client(client_id="docs-check") as client:
            client.add_server("127.0.0.1", port)
            await client.wait_for_server(timeout=10)
            return await client.run("reverse", b"docs", timeout=20)

    return asyncio.run(main()) == b"scod"


def _run(block: Block, port: int, cwd: Path, harp_port: int | None = None) -> None:
    cmd = _command(block, port, harp_port)
    if block.marker in ("runs until stopped", "runs until listening"):
        if block.lang == "sh":
            cmd = ["bash", "-euc", "exec " + block.code.strip().replace("4730", str(port))]
        proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            if block.marker == "runs until listening":
                wait_for(lambda: proc.poll() is not None or listening_ports(proc.pid),
                         timeout=TIMEOUT, what=f"{block.id} to listen")
            else:
                assert _reverse_round_trip(port), block.id
            assert proc.poll() is None, f"{block.id} exited early:\n{proc.communicate()[0]}"
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                output = proc.communicate(timeout=TIMEOUT)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                output = proc.communicate()[0]
        assert proc.returncode in (0, -signal.SIGTERM), f"{block.id}:\n{output}"
        return
    result = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, f"{block.id} failed:\n{result.stdout}\n{result.stderr}"


def _files_before(block: Block, cwd: Path) -> None:
    """Write every ``file:`` block of the same doc that comes before ``block`` into ``cwd``."""
    for other in ALL:
        if other.doc == block.doc and other.line < block.line and other.marker == "file":
            assert other.arg, other.id
            (cwd / other.arg).write_text(other.code)


@pytest.mark.parametrize("block", [b for b in ALL if b.lang in RUN], ids=lambda b: b.id)
def test_example_runs_as_shown(block: Block, server: gear.Server, tmp_path: Path) -> None:
    if block.marker == "fragment":
        assert block.arg, f"{block.id}: say why it is a fragment"
        if block.lang == "python":
            compile(block.code, block.id, "exec")  # at least no syntax error
        return
    _files_before(block, tmp_path)
    if block.marker == "runs until stopped":
        # The example is the worker (or server) here: no other worker may take the job.
        _run(block, server.port, tmp_path)
        return
    if block.arg == "a harp port":
        from tests.server.harp.conftest import LiveServer

        live = LiveServer()
        try:
            _run(block, live.port, tmp_path, live.harp_port)
        finally:
            live.stop()
        return
    ready, stop = threading.Event(), threading.Event()
    harness = None
    if block.marker == "runs with":
        harness = threading.Thread(target=_serve_example_worker,
                                   args=(server.port, ready, stop), daemon=True)
        harness.start()
        assert ready.wait(20), "the example worker did not connect"
    try:
        _run(block, server.port, tmp_path)
    finally:
        stop.set()
        if harness is not None:
            harness.join(20)

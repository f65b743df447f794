"""The bounded fuzz run of the suite: the seed corpus, then hypothesis inputs, for each target.

The targets (tests/fuzz/targets.py) check the packet decoder, the admin commands and the
broker's request handling. Here every file of ``tests/fuzz/corpus/<target>/`` is replayed
(the seeds, and the inputs of past crashes, ``regress-*``), then hypothesis feeds each target
a fixed number of inputs: structured ones (valid packets, admin lines and broker programs from
the same vocabularies, mangled) and plain random bytes. The settings are derandomized, so a
run is reproducible and CI sees the same inputs each time; ``GEAR_FUZZ_EXAMPLES`` scales the
count (default 150 per test, a few seconds per target on a busy machine). The long,
coverage-guided run is ``bench/fuzz.py`` (docs/development.md, "Fuzzing").
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gear import constants as c
from gear.protocol.packets import FIELD_COUNTS, REQ, RES, encode
from tests.fuzz.seeds import ADMIN_LINES, seeds
from tests.fuzz.targets import TARGETS, admin, broker, packets

CORPUS = Path(__file__).parent / "corpus"
EXAMPLES = int(os.environ.get("GEAR_FUZZ_EXAMPLES", "150"))

bounded = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CORPUS_FILES = sorted((p.parent.name, p.name) for p in CORPUS.glob("*/*") if p.is_file())


def test_the_corpus_has_seeds_for_every_target() -> None:
    for target in TARGETS:
        names = {name for t, name in CORPUS_FILES if t == target}
        assert set(seeds(target)) <= names, f"run bench/fuzz.py --write-seeds ({target})"
        assert all((CORPUS / target / n).stat().st_size < 4096 for n in names)


@pytest.mark.parametrize(("target", "name"), CORPUS_FILES)
def test_corpus_input_passes(target: str, name: str) -> None:
    TARGETS[target]((CORPUS / target / name).read_bytes())


# ------------------------------------------------------------------------ strategies

fields = st.one_of(st.sampled_from([b"", b"a", b"b", b"H:t:1", b"u1", b"-", b"1", b"x" * 70]),
                   st.binary(max_size=12).map(lambda b: b.replace(b"\x00", b"")))


@st.composite
def wire_packet(draw: st.DrawFn) -> bytes:
    """A packet of any defined type with fitting fields, sometimes cut or retyped."""
    ptype = draw(st.sampled_from(sorted(FIELD_COUNTS)))
    n = FIELD_COUNTS[ptype]
    data = encode(draw(st.sampled_from([REQ, REQ, RES])), ptype,
                  [draw(fields) for _ in range(n)])
    mangle = draw(st.integers(0, 9))
    if mangle == 0:
        data = data[:draw(st.integers(0, len(data)))]
    elif mangle == 1:
        data = data[:4] + draw(st.binary(min_size=8, max_size=8)) + data[12:]
    return data


admin_line = st.one_of(st.sampled_from(ADMIN_LINES),
                       st.tuples(st.sampled_from(ADMIN_LINES), fields).map(b" ".join))
stream_item = st.one_of(wire_packet(), admin_line.map(lambda line: line + b"\n"),
                        admin_line.map(lambda line: line + b"\r\n"))


@given(st.integers(0, 255), st.integers(0, 255), st.lists(stream_item, max_size=12))
@bounded
def test_packets_structured(flags: int, seed: int, items: list[bytes]) -> None:
    packets(bytes([flags, seed]) + b"".join(items))


@given(st.binary(max_size=600))
@bounded
def test_packets_random_bytes(data: bytes) -> None:
    packets(data)


@given(st.integers(0, 15), st.lists(admin_line, max_size=10))
@bounded
def test_admin_structured(flags: int, lines: list[bytes]) -> None:
    admin(bytes([flags]) + b"\n".join(lines))


@given(st.binary(max_size=400))
@bounded
def test_admin_random_bytes(data: bytes) -> None:
    admin(data)


def _raw_step(peer: int, data: bytes) -> bytes:
    return bytes([1, peer, len(data) % 256, len(data) // 256]) + data


step = st.one_of(
    st.tuples(st.integers(0, 3), st.lists(stream_item, min_size=1, max_size=4)).map(
        lambda t: _raw_step(t[0], b"".join(t[1]))),
    st.binary(min_size=2, max_size=8),  # any other op with its argument bytes
    st.sampled_from([bytes([0, 0]), bytes([3, 0, 4]), bytes([2, 0, 0, 1]), bytes([2, 0, 0, 0]),
                     bytes([4, 0, 1, 0])]),
)


@given(st.integers(0, 255), st.lists(step, max_size=25))
@bounded
def test_broker_structured(flags: int, steps: list[bytes]) -> None:
    broker(bytes([flags]) + b"".join(steps))


@given(st.binary(max_size=600))
@bounded
def test_broker_random_bytes(data: bytes) -> None:
    broker(data)


def test_the_packets_target_catches_a_chunking_difference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The targets must be able to fail: a decoder that lost an event in one chunking.
    from tests.fuzz import targets

    real = targets._decode

    def lossy(stream: bytes, chunks: list[int], flags: int) -> tuple[list[object], str | None]:
        events, err = real(stream, chunks, flags)
        return (events[:-1] if len(chunks) > 1 else events), err

    monkeypatch.setattr(targets, "_decode", lossy)
    with pytest.raises(AssertionError, match="chunking changed the events"):
        packets(b"\x00\x01" + encode(REQ, c.ECHO_REQ, [b"x"]))


def test_the_broker_target_catches_a_lost_job(monkeypatch: pytest.MonkeyPatch) -> None:
    # A broker that forgot to requeue the jobs of a worker that left: the drain finds them.
    from gear.server.broker import Broker

    monkeypatch.setattr(Broker, "_requeue", lambda self, job: None)
    with pytest.raises(AssertionError):
        broker(seeds("broker")["worker-leaves-mid-job"])

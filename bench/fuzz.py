"""Coverage-guided fuzzing of the packet decoder, the admin commands and the broker (atheris).

Run: ``python3 bench/fuzz.py --target packets|admin|broker [--seconds 300] [--crashes DIR]
[--corpus DIR] [--jobs 1]`` or ``python3 bench/fuzz.py --write-seeds``

The targets are tests/fuzz/targets.py (their docstring says what each checks); the suite runs
them for a bounded number of hypothesis examples, this runs them for ``--seconds`` under
atheris (libFuzzer's coverage-guided mutation, ``pip install atheris``), starting from the seed
corpus ``tests/fuzz/corpus/<target>/`` and writing the inputs it finds new coverage with to
``--corpus`` (a temporary directory unless given). Without atheris it falls back to random
mutation of the corpus (no coverage guidance) and says so.

A failure (an AssertionError of a target, or any exception that escaped the code under test)
does not stop the run: its input is saved to ``--crashes`` (default ``fuzz-crashes/<target>``)
as ``crash-<hash>``, with its traceback beside it (``.txt``), counted by distinct traceback
end. The report: executions, executions/s, coverage (libFuzzer's ``cov``: edges; ``ft``:
features) and the crashes. Replay one with ``python3 bench/fuzz.py --target T --replay FILE``.
Nothing here is asserted; the suite's bounded run is tests/fuzz/test_fuzz.py.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))  # this checkout's gear, installed or not

CORPUS = REPO / "tests" / "fuzz" / "corpus"
TARGET_NAMES = ("packets", "admin", "broker")


def load_target(name: str, instrument: bool) -> Callable[[bytes], None]:
    """The target function; imported under atheris's instrumentation when asked."""
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["gear"]):  # coverage of the code under test
            from tests.fuzz.targets import TARGETS
    else:
        from tests.fuzz.targets import TARGETS
    return TARGETS[name]


class Recorder:
    """Runs the target, saving each failing input (first one per traceback end) to ``out``."""

    def __init__(self, target: Callable[[bytes], None], out: Path) -> None:
        self.target = target
        self.out = out
        self.runs = 0
        self.crashes = 0
        self.kinds: dict[str, Path] = {}

    def __call__(self, data: bytes) -> None:
        self.runs += 1
        try:
            self.target(data)
        except Exception:  # the point of fuzzing: nothing may escape, so record everything
            self.crashes += 1
            text = traceback.format_exc()
            kind = "\n".join(text.rstrip().splitlines()[-3:])
            if kind not in self.kinds:
                self.out.mkdir(parents=True, exist_ok=True)
                path = self.out / f"crash-{hashlib.sha1(data).hexdigest()[:16]}"
                path.write_bytes(data)
                path.with_suffix(".txt").write_text(text)
                self.kinds[kind] = path
                print(f"\nCRASH saved to {path}:\n{kind}", file=sys.stderr, flush=True)


def seed_inputs(target: str) -> list[bytes]:
    folder = CORPUS / target
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()] or [b""]


def mutate(rnd: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One random edit of ``data`` (the fallback without atheris)."""
    buf = bytearray(data)
    for _ in range(1 + rnd.randrange(4)):
        op = rnd.randrange(5)
        pos = rnd.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rnd.randrange(256)
        elif op == 1:
            buf[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 8)))
        elif op == 2 and buf:
            del buf[pos:pos + rnd.randrange(1, 8)]
        elif op == 3:
            other = rnd.choice(pool)
            start = rnd.randrange(len(other) + 1)
            buf[pos:pos] = other[start:start + rnd.randrange(1, 64)]
        else:
            buf[pos:pos] = rnd.choice([b"\x00REQ", b"\x00RES", b"\n", b"\r\n", b"\x00", b" "])
    return bytes(buf)


def run_fallback(args: argparse.Namespace, crashes: Path) -> int:
    target = Recorder(load_target(args.target, instrument=False), crashes)
    pool = seed_inputs(args.target)
    rnd = random.Random(args.seed)
    t0 = time.monotonic()
    end = t0 + args.seconds
    while time.monotonic() < end:
        for _ in range(100):
            target(mutate(rnd, rnd.choice(pool), pool))
    took = time.monotonic() - t0
    print(f"{args.target}: {target.runs} executions in {took:.0f} s ({target.runs / took:.0f}/s), "
          "coverage: n/a (atheris is not installed: random mutation of the corpus, no "
          f"guidance); crashes: {target.crashes} ({len(target.kinds)} distinct, in {crashes})")
    return 1 if target.crashes else 0


def child(args: argparse.Namespace, crashes: Path) -> None:
    """Inside the libFuzzer process: instrument, then fuzz until max_total_time."""
    import atheris

    recorder = Recorder(load_target(args.target, instrument=True), crashes)
    flags = [sys.argv[0], f"-max_total_time={int(args.seconds)}", "-print_final_stats=1",
             f"-seed={args.seed}", "-max_len=2048", "-timeout=20", "-rss_limit_mb=4096",
             str(args.corpus), str(CORPUS / args.target)]
    atheris.Setup(flags, recorder)
    atheris.Fuzz()


def run_atheris(args: argparse.Namespace, crashes: Path) -> int:
    """libFuzzer in a child process (it exits by itself); its statistics parsed from stderr."""
    cmd = [sys.executable, __file__, "--child", "--target", args.target, "--seconds",
           str(args.seconds), "--crashes", str(crashes), "--corpus", str(args.corpus),
           "--seed", str(args.seed)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    took = time.monotonic() - t0
    log = proc.stderr
    if args.verbose:
        sys.stderr.write(log)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
    runs = re.search(r"stat::number_of_executed_units: (\d+)", log)
    found = sorted(p for p in crashes.glob("crash-*") if p.suffix != ".txt") \
        if crashes.exists() else []
    kinds = re.findall(r"^CRASH saved to (.*):$", log, re.M)
    units = runs.group(1) if runs else "?"
    rate = f"{int(units) / took:.0f}/s" if runs else "?"
    corpus_size = len(list(Path(args.corpus).iterdir()))
    print(f"{args.target}: {units} executions in {took:.0f} s ({rate}); coverage: "
          f"{cov[-1][0] if cov else '?'} edges, {cov[-1][1] if cov else '?'} features "
          f"(after the seeds: {cov[0][0] if cov else '?'} edges); corpus {corpus_size} new "
          f"inputs in {args.corpus}; crashes: {len(kinds)} distinct ({len(found)} saved in "
          f"{crashes})")
    if proc.returncode not in (0,) and not runs:
        sys.stderr.write(log[-3000:])
        return 2
    return 1 if kinds else 0


def replay(args: argparse.Namespace) -> int:
    target = load_target(args.target, instrument=False)
    target(Path(args.replay).read_bytes())
    print("passes")
    return 0


def write_seeds() -> int:
    from tests.fuzz.seeds import SEEDS, seeds

    for target in SEEDS:
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds(target).items():
            (folder / name).write_bytes(data)
        print(f"{folder}: {len(list(folder.iterdir()))} files")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--target", choices=TARGET_NAMES, default="packets")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--crashes", type=Path, help="where failing inputs go "
                   "(default fuzz-crashes/<target>)")
    p.add_argument("--corpus", type=Path, help="where new coverage inputs go (default: a "
                   "temporary directory)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--replay", type=Path, help="run the target once on this input")
    p.add_argument("--write-seeds", action="store_true", help="write the seed corpus "
                   "(tests/fuzz/seeds.py) into tests/fuzz/corpus/")
    p.add_argument("--no-atheris", action="store_true", help="random mutation only")
    p.add_argument("--verbose", action="store_true", help="show libFuzzer's own output")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.write_seeds:
        return write_seeds()
    if args.replay:
        return replay(args)
    crashes = args.crashes or Path("fuzz-crashes") / args.target
    if args.child:
        child(args, crashes)
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        args.no_atheris = True
    if args.no_atheris:
        return run_fallback(args, crashes)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{args.target}-") as tmp:
        if args.corpus is None:
            args.corpus = Path(tmp)
        args.corpus.mkdir(parents=True, exist_ok=True)
        return run_atheris(args, crashes)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

"""Run gear 0.16.0's own test modules against the ``gear`` package importable here.

Usage: ``python run_upstream.py <dir holding gear/tests/> <module> [<module> ...] [--exclude ID]``

gear's tests import ``gear.tests`` (their helpers: BaseTestCase, FakeSocket). Our package has
no such module, so this script loads gear's ``tests/__init__.py`` from the extracted wheel and
registers it as ``gear.tests`` before loading the test modules; nothing of gear's code is
copied into this repository. The exit status is 0 only if every selected test ran and
passed (a skip counts as a failure).

Imports only the standard library and ``gear`` (plus what gear's tests import).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import unittest
from types import ModuleType


def _load(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _iter_tests(suite: unittest.TestSuite):  # type: ignore[no-untyped-def]
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iter_tests(item)
        else:
            yield item


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("modules", nargs="+")
    parser.add_argument("--exclude", action="append", default=[])
    args = parser.parse_args()

    import gear

    tests_pkg = _load("gear.tests", f"{args.root}/gear/tests/__init__.py")
    gear.tests = tests_pkg  # type: ignore[attr-defined]
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for name in args.modules:
        module = _load(f"gear.tests.{name}", f"{args.root}/gear/tests/{name}.py")
        for test in _iter_tests(loader.loadTestsFromModule(module)):
            if any(test.id().endswith(x) or x in test.id() for x in args.exclude):
                continue
            suite.addTest(test)
    print(f"running {suite.countTestCases()} upstream tests", flush=True)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    # A skipped test did not run: that counts as a failure here (every test must run).
    passed = result.wasSuccessful() and result.testsRun and not result.skipped
    bad = len(result.failures) + len(result.errors) + len(result.skipped)
    print(f"upstream: {result.testsRun - bad} of {suite.countTestCases()} passed", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

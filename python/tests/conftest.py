"""Shared fixtures of the vitcka tests; a run that collects, passes or skips the wrong things fails.

Run from the repository root: `python3 -m pytest python/tests` (`make test` does). The tests import the
package from python/ (no install needed) and use the release `cka` ($CKA, default .build/release/cka).
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

# Every test module must be collected and nothing may be skipped: a missing tool is a failure, not a skip.
EXPECTED_MODULES = {"test_store.py", "test_compare.py", "test_vit_equivalence.py"}
_outcomes = {"skipped": [], "passed": 0}


def pytest_collection_finish(session):
    whole_folder = all(Path(a).resolve() == Path(__file__).parent for a in session.config.args)
    found = {Path(str(item.fspath)).name for item in session.items}
    missing = EXPECTED_MODULES - found
    if whole_folder and not session.config.option.keyword and missing:
        raise pytest.UsageError(f"vitcka tests: no tests collected from {', '.join(sorted(missing))}")


def pytest_runtest_logreport(report):
    if report.skipped:
        _outcomes["skipped"].append(report.nodeid)
    elif report.when == "call" and report.passed:
        _outcomes["passed"] += 1


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0 and (_outcomes["skipped"] or _outcomes["passed"] == 0):
        why = (f"{len(_outcomes['skipped'])} skipped ({', '.join(_outcomes['skipped'][:3])})"
               if _outcomes["skipped"] else "no test passed")
        print(f"\nvitcka tests: FAIL, {why}: every test must run", file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def cka_bin():
    path = Path(os.environ.get("CKA", ROOT / ".build/release/cka"))
    assert path.is_file() and os.access(path, os.X_OK), \
        f"no {path}: build it with `swift build -c release --product cka` (or set CKA)"
    return str(path)


@pytest.fixture(scope="session")
def reference():
    """notebooks-export/reference/cka_reference.py: the project's independent float64 CKA reference."""
    spec = importlib.util.spec_from_file_location("cka_reference", ROOT / "notebooks-export/reference/cka_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_cka(cka_bin, *args):
    """Runs `cka ARGS`; fails the test with its output when it exits non-zero."""
    r = subprocess.run([cka_bin, *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert r.returncode == 0, f"cka {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def read_wide_csv(path):
    """A wide CKA CSV (`layer,<B layers…>`) → (rows, cols, matrix as nested lists of floats)."""
    import csv
    with open(path) as f:
        rows = list(csv.reader(f))
    cols = rows[0][1:]
    names = [r[0] for r in rows[1:]]
    return names, cols, [[float(v) for v in r[1:]] for r in rows[1:]]

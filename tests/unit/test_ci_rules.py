"""tests/conftest.py's CI rules, on a scratch suite: a skip, an importorskip and an xfail fail under CI (and only
there), and a knob that would compare libvirt with itself is refused under CI."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

SCRATCH = '''
import pytest

def test_skips():
    pytest.skip("tool missing")

@pytest.mark.xfail(reason="known bug")
def test_xfails():
    assert False

def test_passes():
    pass
'''


MISSING_DEP = 'import pytest\npytest.importorskip("no_such_module_xyz")\n\ndef test_never():\n    pass\n'


def pytest_in(tmp_path: Path, ci: bool, scratch: str = SCRATCH, **env: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_scratch.py").write_text(scratch)
    environ = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("VIRTSNAP_")}
    environ.update(env, **({"CI": "true"} if ci else {}))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEsx", str(tmp_path)],
                          cwd=tmp_path, env=environ, capture_output=True, text=True, check=False)


def test_skips_and_xfails_fail_under_ci(tmp_path: Path) -> None:
    out = pytest_in(tmp_path, ci=True)
    assert out.returncode == 1, out.stdout
    assert "skipped under CI" in out.stdout and "xfailed under CI" in out.stdout and "known bug" in out.stdout
    assert "1 passed" in out.stdout and "2 failed" in out.stdout


def test_a_module_skipped_for_a_missing_dependency_fails_under_ci(tmp_path: Path) -> None:
    out = pytest_in(tmp_path, ci=True, scratch=MISSING_DEP)
    assert out.returncode == 2, out.stdout  # a collection error: the session stops
    assert "module skipped under CI" in out.stdout and "no_such_module_xyz" in out.stdout


def test_outside_ci_they_are_reported_as_usual(tmp_path: Path) -> None:
    out = pytest_in(tmp_path, ci=False)
    assert out.returncode == 0, out.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in out.stdout


@pytest.mark.parametrize("knob", ["VIRTSNAP_DIFF_IMPL=libvirt", "VIRTSNAP_SCENARIO_CMD=virsh",
                                  "VIRTSNAP_DIFF_PYTHON=/usr/bin/python3"])
def test_self_comparison_knobs_are_refused_under_ci(tmp_path: Path, knob: str) -> None:
    name, value = knob.split("=")
    out = pytest_in(tmp_path, ci=True, **{name: value})
    assert out.returncode == 4 and f"refused under CI: {knob}" in out.stderr, out.stdout + out.stderr


STRAY_LIBVIRTD_USER = '''
import pytest

@pytest.fixture
def libvirtd():
    yield

def test_uses_the_daemon(libvirtd):
    pass
'''


def test_a_libvirtd_user_outside_the_declared_files_is_refused(tmp_path: Path) -> None:
    # xdist would run it on the other worker, beside the declared files' tests on the same daemon
    out = pytest_in(tmp_path, ci=False, scratch=STRAY_LIBVIRTD_USER)
    assert out.returncode != 0
    assert "add test_scratch.py to LIBVIRTD_FILES" in out.stdout + out.stderr


def test_the_declared_libvirtd_files_exist_and_share_one_work_unit() -> None:
    spec = importlib.util.spec_from_file_location("suite_rules", CONFTEST)  # "conftest" may be another one
    assert spec is not None and spec.loader is not None
    rules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rules)
    root = CONFTEST.parents[1]
    assert all((root / name).is_file() for name in rules.LIBVIRTD_FILES)
    assert {rules.work_unit(f"{name}::test_x[1]") for name in rules.LIBVIRTD_FILES} == {"libvirtd"}
    assert rules.work_unit("tests/unit/test_store.py::test_x") == "tests/unit/test_store.py"

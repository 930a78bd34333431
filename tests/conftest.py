"""Suite-wide rules: under CI (the `CI` environment variable set, as `.ci/run` does) a skip or an xfail is a
failure unless ALLOWED names it with its reason, and knobs that would compare libvirt with itself are refused."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import Phase, settings

CI = bool(os.environ.get("CI"))

# node id prefix -> why a skip or xfail there is expected under CI. Keep it short; every entry is printed.
ALLOWED: dict[str, str] = {}

# Knobs that point the candidate side of a comparison at libvirt: the comparison would check libvirt against
# itself and always pass. They exist to check the harnesses; CI refuses them.
SELF_COMPARISON_KNOBS = {
    "VIRTSNAP_DIFF_IMPL": lambda value: value != "virtsnap",
    "VIRTSNAP_DIFF_PYTHON": lambda value: bool(value),
    "VIRTSNAP_SCENARIO_CMD": lambda value: bool(value),
    "VIRTSNAP_SCENARIO_REF": lambda value: bool(value),
}

_allowed_seen: list[tuple[str, str]] = []

# A run started as a background job of a non-interactive shell inherits SIGINT and SIGQUIT ignored (POSIX), and
# so would every command a test starts: the tests that interrupt a command as Ctrl-C does would wait forever.
for _sig, _handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGQUIT, signal.SIG_DFL)):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, _handler)

# `make test` runs two pytest-xdist workers. Each test file runs whole on one worker, in file order, as its
# module fixtures expect; the files below all use the one libvirtd 9.0 the tests start (qemu:///system, its
# /etc/libvirt and /run/libvirt, the libvirt network made in it), so they run on one worker, one after another.
# Declared here once; collection refuses a test that uses those fixtures from a file not named here.
SHARED_SYSTEM_FIXTURES = frozenset({"libvirtd", "libvirt_network"})
LIBVIRTD_FILES = frozenset({
    "tests/qemu_guest/test_corpus.py", "tests/qemu_guest/test_libvirt_check.py",
    "tests/qemu_guest/test_libvirt_crash.py", "tests/qemu_guest/test_libvirt_differential.py",
    "tests/qemu_guest/test_libvirt_driver.py", "tests/qemu_guest/test_libvirt_external.py",
    "tests/qemu_guest/test_libvirt_protect.py", "tests/qemu_guest/test_libvirt_failures.py",
    "tests/remote/test_ansible_libvirt.py",
    "tests/qemu_guest/test_netdev.py", "tests/qemu_guest/test_vs_libvirt.py",
    "tests/remote/test_libvirt_ssh.py", "tests/remote/test_libvirt_ssh_own.py",
})


def work_unit(nodeid: str) -> str:
    """The xdist work unit of a test: its file, or "libvirtd" for the files of the shared daemon."""
    path = nodeid.split("::")[0]
    return "libvirtd" if path in LIBVIRTD_FILES else path


_started = time.monotonic()
_seconds_per_file: defaultdict[str, float] = defaultdict(float)
_running: dict[str, float] = {}  # tests started and not finished (on any worker), with their start

# tests/mutants runs tests against planted bugs: the first failing example is enough, shrinking it is not needed.
settings.register_profile("mutant", phases=[Phase.explicit, Phase.reuse, Phase.generate])


def _allowance(nodeid: str) -> str | None:
    return next((reason for prefix, reason in ALLOWED.items() if nodeid.startswith(prefix)), None)


def pytest_configure(config: pytest.Config) -> None:
    if not CI:
        return
    bad = [f"{name}={os.environ[name]}" for name, wrong in SELF_COMPARISON_KNOBS.items()
           if name in os.environ and wrong(os.environ[name])]
    if bad:
        raise pytest.UsageError(f"refused under CI: {', '.join(bad)} would compare libvirt with itself "
                                "(unset it; the knob is for checking the harness by hand)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    strays = sorted({item.nodeid.split("::")[0] for item in items
                     if SHARED_SYSTEM_FIXTURES & set(getattr(item, "fixturenames", ()))} - LIBVIRTD_FILES)
    if strays:
        raise pytest.UsageError(f"tests/conftest.py: add {', '.join(strays)} to LIBVIRTD_FILES: they use the shared "
                                "libvirtd, and xdist would run them beside its other users")


def pytest_xdist_make_scheduler(config: pytest.Config, log):  # type: ignore[no-untyped-def]
    """xdist's scope scheduling with work_unit as the scope (its `loadgroup` marks do not take under pytest 9)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    _running[nodeid] = time.monotonic()


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    _running.pop(nodeid, None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _seconds_per_file[report.nodeid.split("::")[0]] += report.duration


def _fail_instead(report: pytest.TestReport | pytest.CollectReport, what: str) -> None:
    reason = _allowance(report.nodeid)
    if reason is not None:
        _allowed_seen.append((report.nodeid, reason))
        return
    detail = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr or "")
    report.outcome = "failed"
    report.longrepr = f"{what} under CI (CI={os.environ.get('CI')}): {detail}".strip()
    if hasattr(report, "wasxfail"):
        report.longrepr += f" [xfail: {report.wasxfail}]"
        del report.wasxfail


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped:
        _fail_instead(report, "xfailed" if hasattr(report, "wasxfail") else "skipped")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped:  # a module-level skip would drop every test in it
        _fail_instead(report, "module skipped")


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    # Where the time went, by file (setup, call and teardown; summed over workers): the first thing to read when
    # a CI run is slower than the last one.
    slowest = sorted(_seconds_per_file.items(), key=lambda kv: -kv[1])[:15]
    terminalreporter.write_sep("-", f"slowest files; {time.monotonic() - _started:.0f} s since collection began")
    for name, seconds in slowest:
        terminalreporter.write_line(f"{seconds:8.1f} s  {name}")
    for nodeid, began in _running.items():  # an interrupted run: what it was waiting for
        terminalreporter.write_line(f"still running after {time.monotonic() - began:.0f} s: {nodeid}")
    if CI:
        where = Path(__file__).name
        terminalreporter.write_sep("-", f"CI: skips and xfails fail, except {len(ALLOWED)} allowed in {where}")
        for nodeid, reason in _allowed_seen:
            terminalreporter.write_line(f"allowed: {nodeid}: {reason}")

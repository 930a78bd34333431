"""Suite-wide rules: under CI (the `CI` environment variable set, as `.ci/run` does) a skip or an xfail is a
failure unless ALLOWED names it with its reason, and knobs that would compare libvirt with itself are refused."""

from __future__ import annotations

import os
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
    if CI:
        where = Path(__file__).name
        terminalreporter.write_sep("-", f"CI: skips and xfails fail, except {len(ALLOWED)} allowed in {where}")
        for nodeid, reason in _allowed_seen:
            terminalreporter.write_line(f"allowed: {nodeid}: {reason}")

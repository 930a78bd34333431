"""The documentation site: `mkdocs build --strict` passes, every page of docs/ is in the navigation, and the
generated CLI reference and driver table hold every command, option and driver of the code."""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from virtsnap.cli.cmd_virsh import option_rows
from virtsnap.cli.registry import GROUPS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # --strict: any warning fails the build
    return out


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def test_every_page_is_in_the_navigation(site: Path) -> None:
    nav = set(re.findall(r'href="([^"#]*)" class="md-nav__link', (site / "index.html").read_text()))
    pages = {p.relative_to(DOCS).with_suffix("") for p in DOCS.rglob("*.md")}
    expected = {"." if p.name == "index" and p.parent == Path(".") else f"{p}/" for p in pages}
    assert expected <= nav, sorted(expected - nav)


def test_cli_reference_holds_every_command_and_option(site: Path) -> None:
    page = _text(site / "reference" / "cli" / "index.html")
    headings = list(re.finditer(r"^([\w -]+)¶$", page, re.M))  # h2/h3 titles end with their permalink
    sections = {m.group(1): page[m.end():headings[i + 1].start() if i + 1 < len(headings) else len(page)]
                for i, m in enumerate(headings)}
    for group in GROUPS:
        assert group.name in sections
        for command in group.commands:
            if command.hidden:
                assert command.name not in sections
                continue
            for text, _ in option_rows(command):
                assert text in sections[command.name], (command.name, text)


def test_driver_table_is_read_from_the_drivers(site: Path) -> None:
    page = _text(site / "drivers" / "index.html")
    for flag in ("VIR_DOMAIN_SNAPSHOT_CREATE_LIVE", "VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY",
                 "VIR_DOMAIN_SNAPSHOT_REVERT_FORCE"):
        assert flag in page
    assert "virtsnap:driver-flags" not in page  # the marker was replaced


def test_api_reference_documents_the_handles(site: Path) -> None:
    page = _text(site / "reference" / "api" / "index.html")
    for name in ("snapshotCreateXML", "revertToSnapshot", "listAllSnapshots", "snapshotLookupByName",
                 "getXMLDesc", "getParent", "listAllChildren", "get_error_code"):
        assert name in page, name


def test_benchmark_plots_show_the_tables(site: Path) -> None:
    """Each plot marker became an SVG chart with one line per row of the table above it."""
    source = (DOCS / "benchmarks.md").read_text()
    markers = source.count("<!-- virtsnap:plot ")
    page = (site / "benchmarks" / "index.html").read_text()
    charts = re.findall(r'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \d+ \d+" role="img".*?</svg>', page,
                        re.S)
    assert markers >= 2 and len(charts) == markers
    assert "snapshot-list --tree" in charts[0] and charts[0].count("<polyline") == 11  # the qemu table's rows


FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)


def _doc_blocks() -> list[tuple[Path, str, str]]:
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    return [(page, m.group(1), m.group(2)) for page in pages for m in FENCE.finditer(page.read_text())]


def _command_lines(body: str) -> list[str]:
    """The `virtsnap ...` lines of a shell block (continuations joined; loop bodies included)."""
    text = body.replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip().startswith("virtsnap ")]


def test_every_documented_command_line_parses() -> None:
    """Each `virtsnap` line shown in the README and the docs uses real commands and options (parsed, not run)."""
    from virtsnap.cli import main as cli_main
    from virtsnap.cli.parser import ParseError

    checked = 0
    for page, kind, body in _doc_blocks():
        if kind not in ("sh", "console"):
            continue
        for line in _command_lines(body):
            options = cli_main.parse_global(shlex.split(line, comments=True)[1:])
            if options.args[:1] == ["serve"]:  # the web server has its own options (tests/web checks them)
                continue
            try:
                cli_main.parse(options.args)
            except ParseError as exc:
                raise AssertionError(f"{page.relative_to(ROOT)}: {line}: {exc}") from exc
            checked += 1
    assert checked >= 20


def test_documented_python_compiles_and_test_driver_examples_run() -> None:
    """Python examples compile; shell examples on test:///default run (the others need a real hypervisor)."""
    ran = 0
    for page, kind, body in _doc_blocks():
        if kind == "python":
            compile(body, str(page), "exec")
        if kind == "sh" and page.parent != ROOT and "test:///default" in body:
            for line in _command_lines(body):
                argv = shlex.split(line, comments=True)[1:]
                proc = subprocess.run([str(Path(sys.executable).parent / "virtsnap"), *argv],
                                      capture_output=True, text=True, check=False)
                assert proc.returncode == 0, f"{page.relative_to(ROOT)}: {line}\n{proc.stderr}"
                ran += 1
    assert ran >= 1

"""The documentation site: `mkdocs build --strict` passes, every page of docs/ is in the navigation, and the
generated CLI reference and driver table hold every command, option and driver of the code."""

from __future__ import annotations

import html
import os
import re
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

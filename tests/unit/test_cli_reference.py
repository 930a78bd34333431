"""The CLI reference (docs) and virtsnap(1) come from the command tables: every command and option is in
both, the committed man page is the one the tables give, and `man` renders it without a warning."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from virtsnap.cli import reference
from virtsnap.cli.cmd_virsh import option_rows
from virtsnap.cli.registry import GROUPS

ROOT = Path(__file__).resolve().parents[2]
MAN_PAGE = ROOT / "share" / "man" / "man1" / "virtsnap.1"
VISIBLE = [cmd for group in GROUPS for cmd in group.commands if not cmd.hidden]


def _option_names(command) -> list[str]:
    return [re.search(r"--?[\w-]+|<[\w-]+>", text).group(0).strip("<>-") for text, _ in option_rows(command)]


def test_committed_man_page_is_generated_from_the_tables() -> None:
    # A command or option added to the tables changes the page: `make man` (scripts/gen_reference.py), then commit.
    assert MAN_PAGE.read_text() == reference.roff(), "virtsnap(1) is stale: run `make man` and commit it"


@pytest.fixture(scope="module")
def rendered() -> str:
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="200")
    proc = subprocess.run(["man", "--warnings=all", "-l", str(MAN_PAGE)], capture_output=True, text=True, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # groff's warnings (bad escapes, unknown requests) land here
    return proc.stdout


def test_man_page_lists_every_command_and_option(rendered: str) -> None:
    text = rendered.replace("\u2010", "-").replace("\u2212", "-")  # groff's hyphen glyphs in a UTF-8 locale
    assert "VIRTSNAP(1)" in text
    for command in VISIBLE:
        assert re.search(rf"^\s+{re.escape(command.name)}\b", text, re.M), command.name
        for name in _option_names(command):
            assert f"--{name}" in text or f"<{name}>" in text, (command.name, name)
    for name in reference.global_option_names():
        assert re.search(rf"(^|\s){re.escape(name)}\b", text, re.M), name
    assert "complete" not in re.findall(r"^\s{7}(\S+)", text, re.M)  # the hidden command is not listed
    serve = text.split("virtsnap serve\n", 1)[1]
    for option in ("--connect", "--listen", "--readonly", "--allow-remote"):
        assert option in serve, option


def test_markdown_reference_lists_every_command_and_option() -> None:
    page = reference.markdown()
    headings = re.findall(r"^### (\S+)$", page, re.M)
    assert headings == [cmd.name for cmd in VISIBLE]
    sections = dict(zip(headings, re.split(r"^### \S+$", page, flags=re.M)[1:], strict=True))
    for command in VISIBLE:
        for text, _ in option_rows(command):
            assert f"| `{text}` |" in sections[command.name], (command.name, text)
    for name in reference.global_option_names():
        assert re.search(rf"(^|\s){re.escape(name)}\b", page.split("## Global options")[1], re.M), name
    serve = page.split("## virtsnap serve")[1]
    for text, _ in reference.serve_options()[1]:
        assert f"| `{text}` |" in serve

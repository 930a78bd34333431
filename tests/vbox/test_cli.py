"""The virsh-style CLI on vbox:///session against the fake VBoxManage: a session, refusals, snapshot-edit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from vboxfake import BETA_NAME, FakeVBox

import virtsnap.cli.main  # noqa: F401  (an import error in the CLI fails this module; it never skips)


def virsh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The fake's settings come from the environment the fixture set (VIRTSNAP_VBOXMANAGE, VBOX_FAKE_*).
    return subprocess.run([sys.executable, "-m", "virtsnap", "-c", "vbox:///session", *args], text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120, env=env, check=False)


def test_cli_session(fake_vbox: FakeVBox) -> None:
    out = virsh("list --all; snapshot-create-as alpha a --description first; snapshot-create-as alpha b; "
                "snapshot-revert alpha a; domstate alpha; snapshot-current alpha --name; "
                "snapshot-create-as alpha c; snapshot-list alpha --tree; "
                "snapshot-delete alpha a --children-only; snapshot-list alpha --name")
    assert out.returncode == 0, out.stderr
    assert BETA_NAME in out.stdout and "Domain snapshot a created" in out.stdout
    assert "shut off" in out.stdout
    tree = out.stdout.split("Domain snapshot c created")[-1]
    assert "+- b" in tree and "+- c" in tree
    assert [line for line in out.stdout.splitlines() if line][-1] == "a"


def test_cli_refusals_are_explained(fake_vbox: FakeVBox) -> None:
    out = virsh("snapshot-create-as", "alpha", "x", "--disk-only")
    assert out.returncode == 1
    assert "unsupported configuration: VirtualBox cannot take disk-only snapshots" in out.stderr
    out = virsh("snapshot-create-as alpha p; snapshot-create-as alpha q; snapshot-revert alpha p; "
                "snapshot-create-as alpha r; snapshot-delete alpha p")
    assert "VirtualBox cannot delete snapshot 'p': it has 2 children" in out.stderr
    out = virsh("snapshot-delete", "alpha", "q", "--metadata")
    assert out.returncode == 1 and "VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY" in out.stderr


def test_cli_snapshot_edit_changes_the_description(fake_vbox: FakeVBox, tmp_path: Path) -> None:
    editor = tmp_path / "editor"
    editor.write_text(f"#!{sys.executable}\nimport sys\np = sys.argv[1]\ntext = open(p).read()\n"
                      "open(p, 'w').write(text.replace('<description>first</description>', "
                      "'<description>edited via snapshot-edit</description>'))\n")
    editor.chmod(0o755)
    assert virsh("snapshot-create-as", "alpha", "a", "--description", "first").returncode == 0
    env = dict(os.environ, EDITOR=str(editor), VISUAL=str(editor))
    out = virsh("snapshot-edit", "alpha", "a", env=env)
    assert out.returncode == 0, out.stderr
    assert "Snapshot a edited." in out.stdout
    dump = virsh("snapshot-dumpxml", "alpha", "a")
    assert "<description>edited via snapshot-edit</description>" in dump.stdout
    assert any(c[2:3] == ["edit"] for c in fake_vbox.calls())


def test_cli_snapshot_edit_rename_renames_in_place(fake_vbox: FakeVBox, tmp_path: Path) -> None:
    editor = tmp_path / "editor"
    editor.write_text(f"#!{sys.executable}\nimport sys\np = sys.argv[1]\ntext = open(p).read()\n"
                      "open(p, 'w').write(text.replace('<name>a</name>', '<name>renamed</name>', 1)"
                      ".replace('<description>first</description>', '<description>second</description>'))\n")
    editor.chmod(0o755)
    assert virsh("snapshot-create-as alpha a --description first; snapshot-create-as alpha b").returncode == 0
    env = dict(os.environ, EDITOR=str(editor), VISUAL=str(editor))
    out = virsh("snapshot-edit", "alpha", "a", "--rename", env=env)
    assert out.returncode == 0, out.stderr
    listing = virsh("snapshot-list alpha --name; snapshot-parent alpha b; snapshot-dumpxml alpha renamed")
    names = [line for line in listing.stdout.splitlines() if line]
    assert names[:3] == ["b", "renamed", "renamed"]  # same snapshot, same child, new name
    assert "<description>second</description>" in listing.stdout

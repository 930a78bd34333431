"""snapshot-edit --rename keeps what snapshot-protect said: the renamed snapshot is still protected, the old
name is gone, and nothing else in the tree changed (QEMU driver, a domain that never runs)."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import pytest
from qemu_offline import define_offline

import virtsnap
from virtsnap.cli import main as cli_main


def virsh(*commands: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main.main(["-c", "qemu:///session", "; ".join(commands)])
    return rc, out.getvalue() + err.getvalue()


def renaming_editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$EDITOR becomes a script that renames snapshot 'old' to 'new' in the file it is given."""
    editor = tmp_path / "editor"
    editor.write_text('#!/bin/sh\nsed -i "s|<name>old</name>|<name>new</name>|" "$1"\n')
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.setenv("VISUAL", str(editor))


@pytest.fixture
def domain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    renaming_editor(tmp_path, monkeypatch)
    conn, dom, _disk = define_offline(tmp_path, "ren")
    dom.snapshotCreateXML(f"<domainsnapshot><name>old</name><disks><disk name='vda' snapshot='external'>"
                          f"<source file='{tmp_path / 'old.qcow2'}'/></disk></disks></domainsnapshot>",
                          virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    yield dom
    conn.close()


@pytest.mark.parametrize("protect", [True, False])
def test_a_renamed_snapshot_keeps_its_protection(domain: virtsnap.virDomain, protect: bool) -> None:
    if protect:
        domain.snapshotLookupByName("old").setProtected(True)
    rc, text = virsh("snapshot-edit ren old --rename")
    assert rc == 0, text
    assert domain.snapshotListNames() == ["new"]
    assert domain.snapshotLookupByName("new").isProtected() == (1 if protect else 0)
    if protect:  # and the protection still holds against a plain delete
        rc, text = virsh("snapshot-delete ren new --metadata")
        assert rc != 0 and "is protected" in text
        assert domain.snapshotListNames() == ["new"]


def test_an_internal_snapshot_is_not_renamed_away_from_its_qcow2_tag(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirt's snapshot-edit --rename renames an internal snapshot's metadata only; its qcow2 tag keeps the old
    name and no revert finds it again. virtsnap refuses the rename and changes nothing."""
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    renaming_editor(tmp_path, monkeypatch)
    conn, dom, disk = define_offline(tmp_path, "ren")
    try:
        dom.snapshotCreateXML("<domainsnapshot><name>old</name></domainsnapshot>")
        rc, text = virsh("snapshot-edit ren old --rename")
        assert rc != 0 and "cannot rename a tag" in text, text
        assert dom.snapshotListNames() == ["old"]
        tags = subprocess.run(["qemu-img", "snapshot", "-l", "--image-opts", f"driver=qcow2,file.filename={disk}"],
                              check=True, capture_output=True, text=True).stdout
        assert " old " in tags and " new " not in tags
        rc, text = virsh("snapshot-revert ren old")
        assert rc == 0, text
    finally:
        conn.close()

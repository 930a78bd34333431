"""Issue #12's file-safety findings on real qemu-img and real QEMU (shut-off domains, no guest): virtsnap removes
only files its ledger says it made and that are still those files; no path inside its own directories becomes
a disk, overlay or memory file; formats are never probed; imported tags pass the name checks; a read-only
connection changes nothing; an image's existing tag is never taken over; overlays are created without a window;
snapshot-check reads only the checked domain's images; the runtime directory is verified.

Each test names the finding it proves fixed; each failed on the main branch before the ledger."""

from __future__ import annotations

import ast
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from qemu_offline import define_offline

import virtsnap
from virtsnap import VIR_DOMAIN_SNAPSHOT_CHECK_REPAIR as REPAIR
from virtsnap import VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY as DISK_ONLY
from virtsnap import VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE as REDEFINE
from virtsnap import VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT as REUSE_EXT


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def img(path: Path, backing: Path | None = None, fmt: str = "qcow2", size: str = "16M") -> Path:
    args = ["qemu-img", "create", "-q", "-f", fmt]
    args += ["-F", "qcow2", "-b", str(backing), str(path)] if backing else [str(path), size]
    subprocess.run(args, check=True)
    return path


def write_data(path: Path, fmt: str = "qcow2") -> None:
    subprocess.run(["qemu-io", "-f", fmt, "-c", "write -P 0x5a 0 64k", str(path)], check=True, capture_output=True)


def tags(path: Path) -> list[str]:
    import json

    out = subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--output=json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return [s["name"] for s in json.loads(out).get("snapshots", [])]


def domain(name: str, disk: Path, fmt: str = "qcow2", devices: str = "") -> str:
    return (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
            f"<devices><disk type='file' device='disk'><driver name='qemu' type='{fmt}'/><source file='{disk}'/>"
            f"<target dev='vda' bus='virtio'/></disk>{devices}</devices></domain>")


def refused(code: int, call, *args) -> str:
    with pytest.raises(virtsnap.libvirtError) as exc:
        call(*args)
    assert exc.value.get_error_code() == code, exc.value.get_error_message()
    return exc.value.get_error_message()


def fake_qemu_img(tmp_path: Path, monkeypatch, script: str) -> Path:
    """A qemu-img that runs `script` (Python, with `argv` and `log`) and then the real qemu-img: how a test puts
    another user's action into the exact window between two of virtsnap's steps, or sees what is read."""
    real = subprocess.run(["sh", "-c", "command -v qemu-img"], capture_output=True, text=True).stdout.strip()
    log = tmp_path / "qemu-img.log"
    wrapper = tmp_path / "qemu-img-wrapper"
    wrapper.write_text(f"#!{sys.executable}\nimport os, sys\nargv = sys.argv[1:]\nlog = {str(log)!r}\n"
                       f"with open(log, 'a') as f: f.write(repr(argv) + '\\n')\n"
                       f"{textwrap.dedent(script)}\nos.execv({real!r}, [{real!r}, *argv])\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("VIRTSNAP_QEMU_IMG", str(wrapper))
    return log


# -- item 1: the ledger -----------------------------------------------------------------------------------
def test_paths_that_arrived_by_redefine_are_never_deleted(tmp_path, state):
    """Finding: a REDEFINE'd snapshot may name any file as its memory file or overlay, and delete unlinked it."""
    _conn, dom, disk = define_offline(tmp_path, "led")
    precious = tmp_path / "precious.save"
    precious.write_bytes(b"someone's data")
    victim = img(tmp_path / "victim.qcow2", backing=disk)  # someone's overlay on this disk
    snap = dom.snapshotCreateXML(
        f"<domainsnapshot><name>r</name><state>running</state><creationTime>1</creationTime>"
        f"<memory snapshot='external' file='{precious}'/><disks><disk name='vda' snapshot='external'>"
        f"<source file='{victim}'/></disk></disks>{dom.XMLDesc()}</domainsnapshot>", REDEFINE)
    snap.delete(0)
    assert dom.snapshotNum() == 0
    assert precious.read_bytes() == b"someone's data" and victim.exists()


def test_no_path_inside_virtsnaps_directories_becomes_a_disk_or_a_memory_file(tmp_path, state):
    """Finding: virtsnap's own metadata.db was accepted as a disk, and as a REDEFINE'd memory file (whose
    delete then lost every domain)."""
    conn, dom, disk = define_offline(tmp_path, "led")
    db = state / "metadata.db"
    runtime = conn.driver.runtime
    msg = refused(virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, conn.defineXML, domain("evil", db, fmt="raw"))
    assert "private directory" in msg
    refused(virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, conn.defineXML, domain(
        "evil", disk, devices=f"<channel type='unix'><source mode='bind' path='{runtime}/x.sock'/>"
                              "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>"))
    refused(virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, conn.defineXML, domain(
        "evil", disk, devices=f"<serial type='file'><source path='{state}/locks/x'/></serial>"))
    for memory, overlay in ((db, tmp_path / "o.qcow2"), (tmp_path / "m.save", db)):
        refused(virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, dom.snapshotCreateXML,
                f"<domainsnapshot><name>r</name><state>running</state><creationTime>1</creationTime>"
                f"<memory snapshot='external' file='{memory}'/><disks><disk name='vda' snapshot='external'>"
                f"<source file='{overlay}'/></disk></disks>{dom.XMLDesc()}</domainsnapshot>", REDEFINE)
    in_domain = dom.XMLDesc().replace(str(disk), str(db))  # a snapshot whose <domain> runs on metadata.db
    refused(virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, dom.snapshotCreateXML,
            f"<domainsnapshot><name>r</name><state>shutoff</state><creationTime>1</creationTime>"
            f"<memory snapshot='no'/>{in_domain}</domainsnapshot>", REDEFINE)
    assert [d.name() for d in conn.listAllDomains()] == ["led"] and dom.snapshotNum() == 0
    assert db.stat().st_size > 0


def test_repair_removes_only_what_the_ledger_holds(tmp_path, state):
    """Finding: snapshot-check --repair decided "ours" by a name pattern and a directory scan: it deleted another
    tool's db.snap-revert2 holding data and another VM's (empty) overlay on a shared base."""
    conn, dom, disk = define_offline(tmp_path, "db")
    other_tool = img(tmp_path / "db.snap-revert2", backing=disk)
    write_data(other_tool)
    other_vm = img(tmp_path / "othervm.qcow2", backing=disk)
    before = dom.XMLDesc()
    dom.snapshotCreateXML("<domainsnapshot><name>e1</name></domainsnapshot>", DISK_ONLY)
    ours = tmp_path / "d.e1"
    assert ours.exists()
    conn.defineXML(before)  # the user puts the domain back on its disk: virtsnap's overlay is reached by nothing
    found = {f.subject: f for f in dom.snapshotCheck(REPAIR)}
    assert other_tool.exists() and other_vm.exists()
    assert str(other_tool) not in found and str(other_vm) not in found  # not virtsnap's business
    assert found[str(ours)].repaired and not ours.exists()  # virtsnap's own, empty, reached by nothing: removed
    assert dom.snapshotCheck(0) == []


def test_revert_removes_its_own_overlays_and_never_a_user_disk_named_like_one(tmp_path, state):
    """Finding: a revert deleted the user's own disk db-2024-revert2 (it matched the pattern -revert[0-9]+$)."""
    conn, dom, disk = define_offline(tmp_path, "db")
    xml = dom.XMLDesc()
    snap = dom.snapshotCreateXML("<domainsnapshot><name>S</name></domainsnapshot>", DISK_ONLY)
    user = img(tmp_path / "db-2024-revert2")
    write_data(user)
    conn.defineXML(xml.replace(str(disk), str(user)))  # the user runs the domain on a disk of their own
    dom.revertToSnapshot(snap)
    assert user.exists()
    made = tmp_path / "d.S-revert1"
    assert f"<source file='{made}'/>" in dom.XMLDesc()
    dom.revertToSnapshot(snap)  # the overlay the first revert made is virtsnap's, and no one needs it
    assert not made.exists() and (tmp_path / "d.S-revert2").exists() and user.exists()
    # the overlay snapshot S made (virtsnap's) lost its last user when the domain moved: reported, not the disk
    assert [(f.kind, f.subject) for f in dom.snapshotCheck(0) if f.drift] == [("orphaned-overlay",
                                                                               str(tmp_path / "d.S"))]


def test_a_file_replaced_after_it_was_made_is_not_removed(tmp_path, state):
    """The identity check: the ledger's path now names another file (same name, other inode): it stays."""
    _conn, dom, _disk = define_offline(tmp_path, "db")
    snap = dom.snapshotCreateXML("<domainsnapshot><name>S</name></domainsnapshot>", DISK_ONLY)
    dom.revertToSnapshot(snap)
    made = tmp_path / "d.S-revert1"
    other = tmp_path / "someone's"
    other.write_bytes(b"a file someone put here since")
    os.rename(other, made)  # a new file (another inode: the old one still existed when it was made)
    dom.revertToSnapshot(snap)
    assert made.read_bytes() == b"a file someone put here since"


def test_an_upgraded_store_treats_older_files_as_not_its_own(tmp_path, state):
    """Schema 3 -> 4: a store from before the ledger gets an empty one, so files made before are never removed;
    a read-only connection reads it without upgrading it (item 5: a read-only connection changes nothing)."""
    conn, dom, _disk = define_offline(tmp_path, "db")
    snap = dom.snapshotCreateXML("<domainsnapshot><name>S</name></domainsnapshot>", DISK_ONLY)
    dom.revertToSnapshot(snap)
    conn.close()
    db = sqlite3.connect(state / "metadata.db")
    db.execute("DROP TABLE ledger")  # as a schema-3 store is
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    ro = virtsnap.openReadOnly("qemu:///session")  # reads the old store as it is: no upgrade, no write
    assert ro.lookupByName("db").snapshotListNames() == ["S"] and ro.lookupByName("db").snapshotCheck(0) == []
    ro.close()
    db = sqlite3.connect(state / "metadata.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    db.close()
    conn = virtsnap.open("qemu:///session")
    dom = conn.lookupByName("db")
    assert conn.driver.store.ledger() == []
    dom.revertToSnapshot(dom.snapshotLookupByName("S"))
    assert (tmp_path / "d.S-revert1").exists()  # made before the upgrade: not removed
    dom.revertToSnapshot(dom.snapshotLookupByName("S"))
    assert not (tmp_path / "d.S-revert2").exists()  # made after it: virtsnap's, removed when unneeded


# -- item 4: formats never probed; imported names checked ----------------------------------------------------
def test_a_raw_disk_holding_a_qcow2_header_is_read_as_raw(tmp_path, state):
    """Finding: a qcow2 header written inside a raw disk named another VM's image as "backing" (and --repair
    deleted that VM's overlay), and its snapshot table was imported with hostile names."""
    other = img(tmp_path / "other.qcow2")
    other_top = img(tmp_path / "other-top.qcow2", backing=other)  # another VM's overlay, empty
    raw = img(tmp_path / "guest.img", backing=other)  # what a guest can write into its raw disk
    for name in ("../../etc/passwd", "\x1b[31mred", "plain"):
        subprocess.run(["qemu-img", "snapshot", "-c", name, str(raw)], check=True)
    conn = virtsnap.open("qemu:///session")
    dom = conn.defineXML(domain("rawvm", raw, fmt="raw"))
    found = dom.snapshotCheck(REPAIR)
    assert [f for f in found if f.drift] == []
    assert other.exists() and other_top.exists() and dom.snapshotNum() == 0


def test_hostile_tag_names_are_never_imported(tmp_path, state):
    """Finding: tags found in an image were imported as snapshots without the name checks of snapshot-create."""
    _conn, dom, disk = define_offline(tmp_path, "tags")
    for name in ("../../etc/passwd", "\x1b]0;owned\x07", "by-hand"):
        subprocess.run(["qemu-img", "snapshot", "-c", name, str(disk)], check=True)
    found = {f.subject: f for f in dom.snapshotCheck(REPAIR)}
    assert dom.snapshotListNames() == ["by-hand"]
    assert not found["../../etc/passwd"].repaired and "never imported" in found["../../etc/passwd"].fix
    hidden = found["\\x1b]0;owned\\x07"]  # reported escaped, never printed raw
    assert not hidden.repaired and "control characters" in hidden.fix


def test_every_qemu_img_call_names_the_format_and_check_reads_only_its_domain(tmp_path, state, monkeypatch):
    """Findings: chains were read without naming the format; snapshot-check of one domain ran qemu-img on every
    domain's disks, and blocked on a FIFO."""
    conn, dom, _disk = define_offline(tmp_path, "one")
    other_disk = img(tmp_path / "two.qcow2")
    conn.defineXML(domain("two", other_disk))
    log = fake_qemu_img(tmp_path, monkeypatch, "")
    s = dom.snapshotCreateXML("<domainsnapshot><name>i</name></domainsnapshot>")
    e = dom.snapshotCreateXML("<domainsnapshot><name>e</name></domainsnapshot>", DISK_ONLY)
    dom.revertToSnapshot(e)
    dom.snapshotCheck(REPAIR)
    e.delete(0)
    dom.revertToSnapshot(s)
    calls = [ast.literal_eval(line) for line in log.read_text().splitlines()]
    assert calls
    for argv in calls:
        named = "-f" in argv or any(a.startswith("json:{\"driver\": \"qcow2\"") for a in argv)
        assert named, f"qemu-img {argv} does not name the image's format"
        assert str(other_disk) not in argv, f"snapshot-check of 'one' read the other domain's disk: {argv}"
    log.unlink()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    three = conn.defineXML(domain("three", fifo, fmt="raw"))
    found = three.snapshotCheck(0)  # returns: the FIFO is never opened
    assert [f.kind for f in found] == ["not-a-file"] and not log.exists()
    four = conn.defineXML(domain("four", fifo))  # as qcow2: an internal snapshot reads its tags first
    msg = refused(virtsnap.VIR_ERR_OPERATION_FAILED, four.snapshotCreateXML, "<domainsnapshot/>")
    assert "not a regular file or block device" in msg and not log.exists()


# -- item 5: read-only connections ---------------------------------------------------------------------------
def test_a_read_only_connection_reports_a_pending_entry_and_changes_nothing(tmp_path, state):
    """Finding: recovery ran on a plain lookup, even over a read-only connection."""
    _conn, dom, disk = define_offline(tmp_path, "ro")
    env = dict(os.environ, VIRTSNAP_FAILPOINTS="create.data-done=sigkill")
    proc = subprocess.run([sys.executable, "-m", "virtsnap", "-c", "qemu:///session", "snapshot-create-as", "ro",
                           "s1"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    uuid = dom.UUIDString()
    ro = virtsnap.openReadOnly("qemu:///session")
    rdom = ro.lookupByName("ro")
    found = {f.kind: f for f in rdom.snapshotCheck(0)}
    assert not found["unfinished-operation"].repaired and "not finished yet" in found["unfinished-operation"].detail
    assert rdom.snapshotNum() == 0 and tags(disk) == ["s1"] and ro.driver.store.journal_pending(uuid)
    ro.close()
    rw = virtsnap.open("qemu:///session")  # a read-write open finishes it
    assert rw.lookupByName("ro").snapshotListNames() == ["s1"] and not rw.driver.store.journal_pending(uuid)


# -- item 7: tags that exist already ---------------------------------------------------------------------------
def test_an_internal_snapshot_named_like_an_existing_tag_is_refused(tmp_path, state):
    """Finding: an offline internal snapshot was created although the image had a tag of that name already
    (another tool's), and a later delete removed the other tool's snapshot."""
    _conn, dom, disk = define_offline(tmp_path, "dup")
    subprocess.run(["qemu-img", "snapshot", "-c", "nightly", str(disk)], check=True)
    msg = refused(virtsnap.VIR_ERR_OPERATION_INVALID, dom.snapshotCreateXML,
                  "<domainsnapshot><name>nightly</name></domainsnapshot>")
    assert "already has an internal snapshot named 'nightly'" in msg
    assert tags(disk) == ["nightly"] and dom.snapshotNum() == 0


# -- item 6 and #13 item 5: overlays made without a window; existing files refused -----------------------------
def test_an_existing_overlay_file_even_empty_is_refused_unless_reuse_ext(tmp_path, state, monkeypatch):
    """#13 item 5: an overlay path that exists, even empty, is someone's: refused before any change, and a file
    that appears between the check and the creation is refused too (O_EXCL; an O_TRUNC would overwrite it)."""
    conn, dom, disk = define_offline(tmp_path, "ex")
    empty = tmp_path / "empty.qcow2"
    empty.touch()
    ino = empty.stat().st_ino
    snap = (f"<domainsnapshot><name>x</name><disks><disk name='vda' snapshot='external'><source file='{empty}'/>"
            "</disk></disks></domainsnapshot>")
    msg = refused(virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, dom.snapshotCreateXML, snap, DISK_ONLY)
    assert "already exists" in msg and "REUSE_EXT" in msg
    assert empty.stat().st_size == 0 and empty.stat().st_ino == ino and dom.snapshotNum() == 0

    late = tmp_path / "late.qcow2"  # appears after validation, while virtsnap reads the backing image's size
    fake_qemu_img(tmp_path, monkeypatch, f"""
        if argv[0] == 'info' and not os.path.exists({str(late)!r}):
            open({str(late)!r}, 'w').close()
    """)
    refused(virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, dom.snapshotCreateXML, snap.replace(str(empty), str(late)),
            DISK_ONLY)
    assert late.exists() and late.stat().st_size == 0 and dom.snapshotNum() == 0
    assert f"<source file='{disk}'/>" in dom.XMLDesc()
    monkeypatch.delenv("VIRTSNAP_QEMU_IMG")
    reused = img(tmp_path / "reused.qcow2", backing=disk)
    dom.snapshotCreateXML(snap.replace(str(empty), str(reused)), DISK_ONLY | REUSE_EXT)
    assert conn.driver.store.ledger() == []  # a reused file is the user's: never in the ledger


def test_a_symlink_swapped_in_while_an_overlay_is_made_is_never_written(tmp_path, state, monkeypatch):
    """Finding: overlay creation closed its O_EXCL file and let qemu-img reopen it by path, so a symlink swapped
    in between got its target overwritten."""
    _conn, dom, disk = define_offline(tmp_path, "sw")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    overlay = tmp_path / "new.qcow2"
    fake_qemu_img(tmp_path, monkeypatch, f"""
        if argv[0] == 'create' and os.path.exists({str(overlay)!r}):
            os.rename({str(overlay)!r}, {str(overlay)!r} + '.moved')
            os.symlink({str(victim)!r}, {str(overlay)!r})
    """)
    refused(virtsnap.VIR_ERR_OPERATION_FAILED, dom.snapshotCreateXML,
            f"<domainsnapshot><name>x</name><disks><disk name='vda' snapshot='external'><source file='{overlay}'/>"
            "</disk></disks></domainsnapshot>", DISK_ONLY)
    assert victim.read_bytes() == b"precious" and dom.snapshotNum() == 0
    assert f"<source file='{disk}'/>" in dom.XMLDesc()


# -- item 6: the runtime directory -------------------------------------------------------------------------------
def test_a_runtime_directory_someone_else_controls_is_refused(tmp_path, monkeypatch):
    """Finding: the runtime fallback /tmp/virtsnap-$UID was used without checking its owner or mode."""
    monkeypatch.delenv("VIRTSNAP_QEMU_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "statehome"))
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o755)
    os.chown(planted, 4242, 4242)  # another user's directory
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # anyone may swap things in (no sticky bit)
    for bad in (planted, open_dir):
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(bad))
        msg = refused(virtsnap.VIR_ERR_OPERATION_FAILED, virtsnap.open, "qemu:///session")
        assert "unsafe runtime directory" in msg and str(bad) in msg
        assert not (bad / "virtsnap").exists()
    good = tmp_path / "good"
    good.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(good))
    virtsnap.open("qemu:///session").close()
    assert stat.S_IMODE((good / "virtsnap" / "qemu").stat().st_mode) == 0o700


def test_a_planted_log_symlink_is_never_written_through(monkeypatch):
    """Finding: a qemu.log symlink planted in the runtime directory was overwritten through by QEMU's -D."""
    tmp_path = Path(tempfile.mkdtemp(prefix="vs-", dir="/tmp"))  # short: QEMU's socket paths stay < 108 bytes
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn, dom, _disk = define_offline(tmp_path, "log")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    rundir = Path(conn.driver.runtime) / dom.UUIDString()
    rundir.mkdir(parents=True, exist_ok=True)
    os.symlink(victim, rundir / "qemu.log")
    dom.create()
    try:
        assert victim.read_bytes() == b"precious"
        assert not (rundir / "qemu.log").is_symlink()
    finally:
        dom.destroy()
        shutil.rmtree(tmp_path)


def test_a_backing_file_without_a_recorded_format_is_refused_not_probed(tmp_path, state):
    """Item 4 at start: QEMU would probe a backing file whose format the header does not record; refused first."""
    base = img(tmp_path / "base.img")
    top = img(tmp_path / "top.qcow2", backing=base)
    with open(top, "r+b") as f:  # drop the backing-format header extension, as old qemu-img versions wrote it
        head = f.read(65536)
        f.seek(head.index(b"\xe2\x79\x2a\xca"))
        f.write(b"\x12\x34\x56\x78")
    conn = virtsnap.open("qemu:///session")
    dom = conn.defineXML(domain("noformat", top))
    msg = refused(virtsnap.VIR_ERR_OPERATION_FAILED, dom.create)
    assert "refusing to probe" in msg and not dom.isActive()


def test_definitions_stored_before_the_checks_are_checked_at_start_revert_and_delete(tmp_path, state):
    """Item 1, every entry point: a store written before these checks (here: edited by hand) may name
    metadata.db; starting, reverting to or deleting such a snapshot is refused and metadata.db stays."""
    conn, dom, disk = define_offline(tmp_path, "old")
    precious = tmp_path / "m.save"
    snap = dom.snapshotCreateXML(
        f"<domainsnapshot><name>r</name><state>running</state><creationTime>1</creationTime>"
        f"<memory snapshot='external' file='{precious}'/><disks><disk name='vda' snapshot='external'>"
        f"<source file='{tmp_path / 'o.qcow2'}'/></disk></disks>{dom.XMLDesc()}</domainsnapshot>", REDEFINE)
    conn.close()
    db_path = state / "metadata.db"
    db = sqlite3.connect(db_path)
    db.execute("UPDATE snapshots SET xml = replace(xml, ?, ?)", (str(precious), str(db_path)))
    db.execute("UPDATE domains SET xml = replace(xml, ?, ?)", (str(disk), str(db_path)))
    db.commit()
    db.close()
    conn = virtsnap.open("qemu:///session")
    dom = conn.lookupByName("old")
    snap = dom.snapshotLookupByName("r")
    refused(virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, dom.create)
    refused(virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, dom.revertToSnapshot, snap)
    refused(virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, snap.delete, 0)
    assert db_path.stat().st_size > 0 and dom.snapshotNum() == 1 and not dom.isActive()

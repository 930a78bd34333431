"""The QEMU driver's metadata store when the file system fails it: its state directory is a regular file, it
is read-only (a read-only bind mount), full (a small tmpfs), or another process holds the database's write
lock. Each is a one-line libvirt error through the CLI, no traceback, and the store and the disk image are
as before. Mounts are made in a private mount namespace (`unshare -m`), so nothing outlives the test."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "virtsnap", "-c", "qemu:///session"]


def dump(state: Path) -> list[str]:
    """The database's logical content (its files copied aside, so a read-only or full file system is fine)."""
    with tempfile.TemporaryDirectory() as scratch:
        for suffix in ("", "-wal"):
            source = state / f"metadata.db{suffix}"
            if source.exists():
                shutil.copyfile(source, Path(scratch) / f"metadata.db{suffix}")
        db = sqlite3.connect(Path(scratch) / "metadata.db")
        try:  # sqlite_sequence is the journal's id counter: an entry begun and ended moves it, and that is all
            return [line for line in db.iterdump() if "sqlite_sequence" not in line]
        finally:
            db.close()


def tags(image: Path) -> list[str]:
    out = subprocess.run(["qemu-img", "snapshot", "-l", "-U", str(image)], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[1] for line in out.splitlines()[2:]]


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(state dir, disk image): domain 'd' defined on qemu:///session with one internal snapshot 's1'."""
    state = tmp_path / "state"
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(state))
    image = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    xml = tmp_path / "d.xml"
    xml.write_text("<domain type='qemu'><name>d</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
                   "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                   f"<source file='{image}'/><target dev='vda' bus='virtio'/></disk></devices></domain>")
    run = subprocess.run([*CLI, f"define {xml}; snapshot-create-as d s1"], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stderr
    return state, image


def assert_one_line_error(stderr: str, expected: str) -> None:
    """The libvirt error is one line of its own (after virsh's own 'failed to connect' line, if any)."""
    lines = stderr.splitlines()
    assert "Traceback" not in stderr and "internal error" not in stderr and "Error:" not in stderr, stderr
    assert lines[-1] == f"error: {expected}", stderr
    assert lines[:-1] in ([], ["error: failed to connect to the hypervisor"]), stderr


def test_state_dir_is_a_regular_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory\n")
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(state))
    for command in ("list --all", "snapshot-list d"):
        run = subprocess.run([*CLI, command], capture_output=True, text=True, check=False)
        assert run.returncode == 1
        assert_one_line_error(run.stderr, f"cannot create directory '{state}': Not a directory")
    assert state.read_text() == "not a directory\n"
    # a parent that is a file, for the API: VIR_ERR_SYSTEM_ERROR
    import virtsnap

    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(state / "qemu"))
    with pytest.raises(virtsnap.libvirtError) as info:
        virtsnap.open("qemu:///session")
    assert info.value.get_error_code() == virtsnap.VIR_ERR_SYSTEM_ERROR
    assert info.value.get_error_message() == f"cannot create directory '{state / 'qemu'}': Not a directory"


def in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a private mount namespace: its mounts vanish with it."""
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-euc", script],
                          capture_output=True, text=True, check=False, timeout=300)


def test_read_only_state_dir(seeded: tuple[Path, Path]) -> None:
    state, image = seeded
    before = dump(state)
    script = (f"mount --bind -o ro {state} {state}\n"
              f"{' '.join(CLI)} 'snapshot-create-as d s2' 2>&1 && echo rc=0 || echo rc=$?\n")
    run = in_namespace(script)
    assert run.stdout.endswith("rc=1\n"), run
    assert_one_line_error(run.stdout.removesuffix("rc=1\n"),
                          f"cannot open metadata database '{state}/metadata.db': Read-only file system")
    assert dump(state) == before
    assert tags(image) == ["s1"]


RECOVERED = re.compile(r"(finished an operation a dead process left undone: create of pid \d+: rolled back: "
                       r"snapshot 's2' was in 0 of 1 disks; removed\n)?")


def test_full_disk_at_every_point_of_a_create(seeded: tuple[Path, Path], tmp_path: Path) -> None:
    """The state dir on a 512 KiB tmpfs filled to leave 0, 24, 32... KiB: each create either succeeds or fails
    with one line and changes nothing, neither the store nor the image (a record that cannot be written takes
    its snapshot back). Both kinds of failure are reached: opening the store and its commit point."""
    state, image = seeded
    seed, seed_image = tmp_path / "seed", tmp_path / "seed.qcow2"
    shutil.copytree(state, seed)
    shutil.copyfile(image, seed_image)
    before = dump(seed)
    outcomes: set[str] = set()
    for free in (0, *range(24, 161, 8)):  # KiB left free; stops at the first create that fits
        shutil.copyfile(seed_image, image)
        result = tmp_path / "result.json"
        script = f"""
mount -t tmpfs -o size=512k tmpfs {state}
cp -a {seed}/. {state}/
avail=$(df -k --output=avail {state} | tail -1)
if [ $avail -gt {free} ]; then dd if=/dev/zero of={state}/fill bs=1k count=$((avail - {free})) 2>/dev/null; fi
set +e
{' '.join(CLI)} 'snapshot-create-as d s2' >{tmp_path}/out 2>{tmp_path}/err
echo $? >{tmp_path}/rc
rm -f {state}/fill
{' '.join(CLI)} 'snapshot-list d --name' >{tmp_path}/listing 2>{tmp_path}/listing-err
{sys.executable} -c 'import json, sys; sys.path.insert(0, "{Path(__file__).parent}")
from test_store_failures import dump; json.dump(dump(__import__("pathlib").Path("{state}")), open("{result}", "w"))'
"""
        run = in_namespace(script)
        assert run.returncode == 0, run
        rc = int((tmp_path / "rc").read_text())
        err = (tmp_path / "err").read_text()
        after = json.loads(result.read_text())
        listing = (tmp_path / "listing").read_text().split()
        assert RECOVERED.fullmatch((tmp_path / "listing-err").read_text())  # an entry the full disk left, undone
        if rc == 0:
            outcomes.add("created")
            assert tags(image) == ["s1", "s2"] and listing == ["s1", "s2"] and after != before
            break
        assert listing == ["s1"], free
        assert rc == 1, err
        assert "No space left on device" in err
        assert_one_line_error(err, err.splitlines()[-1].removeprefix("error: "))
        outcomes.add("at connect" if "failed to connect" in err else "at commit")
        assert after == before, free
        assert tags(image) == ["s1"], free
    assert outcomes == {"at connect", "at commit", "created"}, outcomes


def test_locked_database(seeded: tuple[Path, Path]) -> None:
    state, image = seeded
    before = dump(state)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\n"
         f"db = sqlite3.connect({str(state / 'metadata.db')!r}, isolation_level=None)\n"
         "db.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        run = subprocess.run([*CLI, "snapshot-create-as d s2"], capture_output=True, text=True, check=False,
                             env={**os.environ, "VIRTSNAP_STORE_TIMEOUT": "0.2"})
        assert run.returncode == 1
        assert_one_line_error(run.stderr, f"resource busy: metadata database '{state}/metadata.db' is locked "
                                          "by another process (waited 0.2 s)")
        listing = subprocess.run([*CLI, "snapshot-list d --name"], capture_output=True, text=True, check=False)
        assert listing.returncode == 0 and listing.stdout.split() == ["s1"]  # readers are not blocked
    finally:
        holder.communicate("")
    assert dump(state) == before
    assert tags(image) == ["s1"]

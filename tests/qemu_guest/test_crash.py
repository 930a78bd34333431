"""Crash safety on a real TCG guest: every failpoint of create, revert and delete (internal, external
disk-only, memory, running and shut off) kills the process that runs the operation (SIGKILL, through
VIRTSNAP_FAILPOINTS), then a new connection opens the domain and must find

- the tree as it was before the call or as the call would have left it, never anything in between;
- the guest's marker data matching that outcome (a revert brings back the snapshot's marker, a create or a
  delete keeps the live one);
- snapshot-check reporting no drift (no untracked or lost snapshot, no orphaned overlay, no guest left
  paused or frozen, no unfinished operation).

The test fails when a failpoint in the driver has no crash case here, and prints the count at the end.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import virtsnap
from virtsnap import (
    VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY as DISK_ONLY,
)
from virtsnap.drivers.qemu import tpm

from .conftest import agent_for, domain_xml

pytestmark = pytest.mark.qemu

SRC = Path(virtsnap.__file__).resolve().parent
RESULTS: dict[str, list[str]] = {}  # failpoint -> outcomes ("before"/"after") of its cases
RAN: set[str] = set()  # crash tests that ran to their end
GROUPS = 5


def driver_failpoints() -> set[str]:
    names: set[str] = set()
    for path in (SRC / "drivers" / "qemu").glob("*.py"):
        names |= set(re.findall(r'failpoints\.hit\("([a-z.-]+)"\)', path.read_text()))
    return names


def picture(dom) -> tuple[frozenset[tuple[str, str | None]], str | None]:
    """The tree as a user sees it: every (snapshot, parent) and the current snapshot."""
    pairs = set()
    for snap in dom.listAllSnapshots():
        try:
            parent = snap.getParent().getName()
        except virtsnap.libvirtError:
            parent = None
        pairs.add((snap.getName(), parent))
    current = dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None
    return frozenset(pairs), current


def disk_source(dom) -> str:
    return dom.XMLDesc().split("<source file='")[1].split("'")[0]


def write_marker(conn, dom, text: str) -> None:
    with agent_for(conn, dom) as agent:
        agent.shell(f"echo {text} > /mnt/marker; sync")


def read_marker(conn, dom) -> str:
    """The marker as the guest sees it (running), or as its disk holds it (shut off, journal replayed)."""
    if dom.isActive():
        with agent_for(conn, dom) as agent:
            return agent.shell("cat /mnt/marker").strip()
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        raw = os.path.join(tmp, "disk.raw")
        subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", disk_source(dom), raw], check=True)
        subprocess.run(["e2fsck", "-fy", raw], capture_output=True)  # replays the ext4 journal
        out = subprocess.run(["debugfs", "-R", "cat /marker", raw], capture_output=True, text=True, check=True)
        return out.stdout.strip()


@dataclass
class Crash:
    """One domain under test, and the crash cases run on it."""

    conn: virtsnap.virConnect
    state: Path
    name: str = "crash"
    markers: dict[str, str] = field(default_factory=dict)  # snapshot -> marker when it was taken

    def __post_init__(self) -> None:
        self.first = self.conn

    @property
    def dom(self):
        return self.conn.lookupByName(self.name)

    def reopen(self) -> None:
        """A new connection, as the next virtsnap process would open one: it finishes what the dead one left."""
        if self.conn is not self.first:  # the fixture's connection is closed by the fixture
            self.conn.close()
        self.conn = virtsnap.open("qemu:///session")
        self.conn.lookupByName(self.name)

    def case(self, failpoint: str, *argv: str, op: str, target: str) -> str:
        dom = self.dom
        before, live = picture(dom), read_marker(self.conn, dom)
        after = self.expected(dom, before, op, target)
        after_marker = self.markers.get(target, live) if op == "revert" else live
        env = dict(os.environ, VIRTSNAP_QEMU_STATE_DIR=str(self.state), VIRTSNAP_FAILPOINTS=f"{failpoint}=sigkill")
        proc = subprocess.run([sys.executable, "-m", "virtsnap", "-c", "qemu:///session", *argv],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == -9, f"{failpoint} was not reached by {argv}: rc {proc.returncode} {proc.stderr}"
        self.reopen()
        dom = self.dom
        found = picture(dom)
        assert found in (before, after), f"{failpoint}: tree {found} is neither {before} nor {after}"
        outcome = "after" if found == after else "before"
        marker = read_marker(self.conn, dom)
        expected = {after_marker} if found == after else {live}
        if before == after:
            expected = {live, after_marker}
        assert marker in expected, f"{failpoint}: marker {marker!r}, expected {expected} ({outcome})"
        drift = [f for f in dom.snapshotCheck(0) if f.drift and not f.repaired]
        assert not drift, f"{failpoint}: snapshot-check reports {drift}"
        # the domain's swtpm lives exactly as long as its QEMU: none orphaned by the crash, none missing
        assert len(swtpms(self.state, dom.UUIDString())) == int(dom.isActive()), failpoint
        if op == "create" and outcome == "after":
            self.markers[target] = live
        RESULTS.setdefault(failpoint, []).append(outcome)
        return outcome

    @staticmethod
    def expected(dom, before, op: str, target: str):
        pairs, current = dict(before[0]), before[1]
        if op == "create":
            pairs[target] = current
            current = target
        elif op == "revert":
            current = target
        elif op == "delete":
            parent = pairs.pop(target)
            pairs = {n: (parent if p == target else p) for n, p in pairs.items()}
            if current == target:
                current = parent
        return frozenset(pairs.items()), current

    def snapshot(self, name: str, flags: int = 0, xml_extra: str = "") -> None:
        self.dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name>{xml_extra}</domainsnapshot>", flags)
        self.markers[name] = read_marker(self.conn, self.dom)


def swtpms(state: Path, uuid: str) -> list[int]:
    """The live swtpm processes working on the domain's TPM state directory (zombies have no cwd)."""
    where = str(tpm.state_path(state, uuid))
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "swtpm" and \
                    os.readlink(proc / "cwd") == where:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture
def crash(guest, workdir, conn):
    state = workdir / "state"
    c = Crash(conn, state)
    # with an emulated TPM: its swtpm must start and end with QEMU through every crash (the PVH guest does not
    # look for it; the device and its state are there all the same, and in every memory snapshot)
    conn.defineXML(domain_xml(guest, workdir, name=c.name).replace(
        "</devices>", "<tpm model='tpm-tis'><backend type='emulator' version='2.0'/></tpm></devices>"))
    yield c
    RAN.add(os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0])
    for dom in c.conn.listAllDomains():
        if dom.isActive():
            dom.destroy()


def test_internal_snapshots_of_a_running_guest(crash):
    c = crash
    c.dom.create()
    write_marker(c.conn, c.dom, "m0")
    c.snapshot("base")
    for i, point in enumerate(("create.journaled", "create.save-started", "create.data-done")):
        write_marker(c.conn, c.dom, f"c{i}")
        c.case(point, "snapshot-create-as", c.name, f"c{i}", op="create", target=f"c{i}")
    for i, point in enumerate(("revert.journaled", "revert.load-started", "revert.data-done")):
        write_marker(c.conn, c.dom, f"r{i}")
        c.case(point, "snapshot-revert", c.name, "base", op="revert", target="base")
    for i, point in enumerate(("delete.journaled", "delete.data-done", "delete.committed")):
        c.snapshot(f"d{i}")
        c.case(point, "snapshot-delete", c.name, f"d{i}", op="delete", target=f"d{i}")


def test_internal_snapshots_of_a_shut_off_guest(crash):
    c = crash
    c.dom.create()
    write_marker(c.conn, c.dom, "m0")
    c.dom.destroy()
    c.snapshot("off0")
    c.dom.create()
    write_marker(c.conn, c.dom, "m1")
    c.dom.destroy()
    for i, point in enumerate(("create.journaled", "create.data-done")):
        c.case(point, "snapshot-create-as", c.name, f"c{i}", op="create", target=f"c{i}")
    for point in ("revert.journaled", "revert.data-done"):
        c.case(point, "snapshot-revert", c.name, "off0", op="revert", target="off0")
    for i, point in enumerate(("delete.journaled", "delete.data-done", "delete.committed")):
        c.snapshot(f"d{i}")
        c.case(point, "snapshot-delete", c.name, f"d{i}", op="delete", target=f"d{i}")


def test_external_disk_only_snapshots_of_a_running_guest(crash):
    c = crash
    c.dom.create()
    write_marker(c.conn, c.dom, "m0")
    for i, point in enumerate(("external.overlays-created", "external.switched", "ledger.recorded")):
        write_marker(c.conn, c.dom, f"e{i}")
        c.case(point, "snapshot-create-as", c.name, f"e{i}", "--disk-only", op="create", target=f"e{i}")
    c.case("external.frozen", "snapshot-create-as", c.name, "q", "--disk-only", "--quiesce",
           op="create", target="q")
    c.snapshot("x", DISK_ONLY)
    for i, point in enumerate(("revert-external.stopped", "revert-external.overlays-created",
                               "revert-external.committed")):
        if not c.dom.isActive():
            c.dom.create()
        write_marker(c.conn, c.dom, f"r{i}")
        c.case(point, "snapshot-revert", c.name, "x", "--running", "--force", op="revert", target="x")
    if not c.dom.isActive():
        c.dom.create()
    for i, point in enumerate(("delete.journaled", "delete.job-started", "external-delete.step-done",
                               "delete.data-done", "delete.committed")):
        c.snapshot(f"d{i}", DISK_ONLY)
        write_marker(c.conn, c.dom, f"after-d{i}")
        c.case(point, "snapshot-delete", c.name, f"d{i}", op="delete", target=f"d{i}")


def test_external_memory_snapshots(crash, workdir):
    c = crash
    c.dom.create()
    write_marker(c.conn, c.dom, "m0")
    for i, point in enumerate(("external.overlays-created", "memory.migrating", "external.switched")):
        write_marker(c.conn, c.dom, f"e{i}")
        c.case(point, "snapshot-create-as", c.name, f"mem{i}", "--memspec", f"file={workdir}/mem{i}.save",
               op="create", target=f"mem{i}")
    # LIVE: the memory stream goes through a pipe held until the disks switched, copied by a relay process that
    # outlives the dead one. Killed while it held the stream (guest stopped, disks switched), the snapshot is
    # rolled back (the overlay merged back: the guest keeps its writes); killed after releasing it, kept.
    for i, (point, outcome) in enumerate((("memory.held", "before"), ("memory.migrating", "after"))):
        write_marker(c.conn, c.dom, f"l{i}")
        assert c.case(point, "snapshot-create-as", c.name, f"live{i}", "--memspec", f"file={workdir}/live{i}.save",
                      "--live", op="create", target=f"live{i}") == outcome
        assert (workdir / f"live{i}.save").exists() == (outcome == "after")
        assert c.dom.state()[0] == 1  # running again
    c.snapshot("full", xml_extra=f"<memory snapshot='external' file='{workdir}/full.save'/>")
    write_marker(c.conn, c.dom, "later")
    c.case("revert-external.committed", "snapshot-revert", c.name, "full", op="revert", target="full")


def test_external_snapshots_of_a_shut_off_guest(crash):
    c = crash
    c.dom.create()
    write_marker(c.conn, c.dom, "m0")
    c.dom.destroy()
    for i, point in enumerate(("external.overlays-created", "external.switched")):
        c.case(point, "snapshot-create-as", c.name, f"e{i}", "--disk-only", op="create", target=f"e{i}")
    c.snapshot("x", DISK_ONLY)
    c.case("revert-external.overlays-created", "snapshot-revert", c.name, "x", op="revert", target="x")
    c.case("ledger.recorded", "snapshot-revert", c.name, "x", op="revert", target="x")  # the new overlay's row
    for i, point in enumerate(("external-delete.step-done", "delete.data-done", "delete.committed")):
        c.snapshot(f"d{i}", DISK_ONLY)
        c.case(point, "snapshot-delete", c.name, f"d{i}", op="delete", target=f"d{i}")


def test_every_failpoint_has_a_crash_case():
    """Runs last in this module: the crash cases above covered every failpoint the driver has."""
    total = sum(len(v) for v in RESULTS.values())
    print(f"\ncrash test: {len(RESULTS)} failpoints, {total} crash cases passed "
          f"({sum(v.count('after') for v in RESULTS.values())} rolled forward, "
          f"{sum(v.count('before') for v in RESULTS.values())} rolled back)")
    # Always: every failpoint of the driver is named in this module (a crash case names it).
    named = {node.value for node in ast.walk(ast.parse(Path(__file__).read_text()))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not driver_failpoints() - named, f"failpoints no crash case names: {sorted(driver_failpoints() - named)}"
    # When the whole module ran (always in CI): every failpoint was also crashed at and recovered from.
    if os.environ.get("CI"):
        assert len(RAN) == GROUPS, f"only {len(RAN)} of the {GROUPS} crash tests ran to their end"
    if len(RAN) == GROUPS:
        missing = driver_failpoints() - set(RESULTS)
        assert not missing, f"failpoints without a crash case: {sorted(missing)}"

"""The version-decided delegation of libvirt+ against a real newer libvirtd (bookworm-backports' 11.3, in its own
mount namespace: the `libvirtd_newer` fixture): external snapshots reverted and deleted through
`libvirt+qemu+unix:///system?socket=...` are libvirt's own operations there (libvirt's overlay names, nothing in
virtsnap's journal or ledger), with the same results as the same steps through python3-libvirt on that daemon;
what 11.3 refuses (CHILDREN / CHILDREN_ONLY reaching external snapshots, the external snapshot the domain runs on
after a revert while it has children) is virtsnap's own. Each revert and delete is proved by a marker file on the
disk and a value in RAM."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import libvirt
import pytest

import virtsnap
import virtsnap.libvirt_qemu
from virtsnap.store.db import MetadataStore

from .conftest import domain_xml
from .test_libvirt_driver import shell, wait_for_agent
from .test_libvirt_external import chain, mark, markers, source

pytestmark = pytest.mark.qemu

ERRORS = (libvirt.libvirtError, virtsnap.libvirtError)
DISK_ONLY = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY


class Domain:
    """One copy of the tiny guest in the newer libvirtd, in a directory of its own, driven either through
    virtsnap (`libvirt+` + the daemon's URI) or through python3-libvirt; `oracle` is always libvirt-python."""

    def __init__(self, guest, root: Path, daemon, name: str, via: str) -> None:
        self.images = root / name
        self.images.mkdir(mode=0o755)
        for part in ("kernel", "initrd"):
            shutil.copy(getattr(guest, part), self.images / part)
        self.disk = str(self.images / "disk.qcow2")
        xml = domain_xml(guest, self.images, name=name)  # which makes the disk, named after the domain
        os.rename(self.images / f"{name}.qcow2", self.disk)
        xml = (xml.replace(guest.kernel, str(self.images / "kernel")).replace(guest.initrd, str(self.images / "initrd"))
               .replace(str(self.images / f"{name}.qcow2"), self.disk)
               .replace(f"<serial type='file'><source path='{self.images / (name + '.serial')}'/></serial>", ""))
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors as exceptions only, as virtsnap does
        self.oracle_conn = libvirt.open(daemon.uri)
        self.conn = virtsnap.open("libvirt+" + daemon.uri) if via == "virtsnap" else self.oracle_conn
        self.dom = self.conn.defineXML(xml)
        self.oracle = self.oracle_conn.lookupByName(name)

    def ext(self, name: str, memory: bool = False) -> str:
        mem = f"<memory snapshot='external' file='{self.images / (name + '.mem')}'/>" if memory else ""
        return (f"<domainsnapshot><name>{name}</name>{mem}<disks><disk name='vda' snapshot='external'>"
                f"<source file='{self.images / (name + '.qcow2')}'/></disk></disks></domainsnapshot>")

    def snap(self, name: str):
        return self.dom.snapshotLookupByName(name)

    def files(self) -> list[str]:
        """The directory's images and memory files, libvirt's revert overlays (`disk.<time>`) as `disk.<N>`."""
        return sorted(re.sub(r"^disk\.\d+$", "disk.<N>", f) for f in os.listdir(self.images)
                      if f not in ("kernel", "initrd"))

    def rel(self, path: str) -> str:
        return re.sub(r"^disk\.\d+$", "disk.<N>", os.path.relpath(path, self.images))

    def view(self) -> dict:
        """What a user checks after a step, read through libvirt-python and qemu-img."""
        current = self.oracle.snapshotCurrent().getName() if self.oracle.hasCurrentSnapshot() else None
        return {"snapshots": sorted(self.oracle.snapshotListNames()), "current": current,
                "state": self.oracle.state()[0], "files": self.files(),
                "chain": [self.rel(p) for p in chain(source(self.oracle))]}

    def close(self) -> None:
        if self.oracle.isActive():
            self.oracle.destroy()
        for snap in self.oracle.listAllSnapshots():
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        self.oracle.undefine()
        if self.conn is not self.oracle_conn:
            self.conn.close()
        self.oracle_conn.close()


@pytest.fixture
def newer(guest, libvirtd_newer, workdir, monkeypatch):
    workdir.chmod(0o755)  # libvirt's QEMU runs as libvirt-qemu: it must reach the images
    state = workdir / "state"
    monkeypatch.setenv("VIRTSNAP_LIBVIRT_STATE_DIR", str(state))
    made: list[Domain] = []

    def make(via: str) -> Domain:
        made.append(Domain(guest, workdir, libvirtd_newer, f"vs-newer-{via}-{os.getpid()}", via))
        return made[-1]

    yield make, state
    for domain in made:
        domain.close()


def test_the_daemon_is_newer_and_its_own(libvirtd_newer):
    conn = libvirt.open(libvirtd_newer.uri)
    try:
        assert conn.getLibVersion() == 11_003_000  # python3-libvirt 9.0 as the client, libvirtd 11.3 answering
        assert "<externalSnapshot/>" in conn.getCapabilities()  # what libvirt >= 9.9 advertises
    finally:
        conn.close()
    system = libvirt.open("qemu:///system") if Path("/run/libvirt/libvirt-sock").exists() else None
    if system is not None:  # the 9.0 daemon other tests use, if it runs, is untouched and still 9.0
        assert system.getLibVersion() == 9_000_000
        system.close()


def running_memory_revert_and_delete(domain: Domain) -> list[Any]:
    """An external snapshot with memory of the running guest, reverted to, then deleted (a leaf); the view
    after each step."""
    dom = domain.dom
    seen: list[Any] = []
    dom.create()
    wait_for_agent(dom)
    mark(dom, "1")
    dom.snapshotCreateXML(domain.ext("m1", memory=True))
    mark(dom, "2")
    dom.revertToSnapshot(domain.snap("m1"))
    wait_for_agent(dom)  # the restored guest's agent channel reconnects in its own time
    m1 = domain.oracle.snapshotLookupByName("m1").getXMLDesc(0)
    seen += [markers(dom), domain.view(), domain.rel(re.search(r"<disks>.*?<source file='([^']+)'", m1, re.S)[1])]
    mark(dom, "3")
    domain.snap("m1").delete(0)
    seen += [markers(dom), domain.view()]
    return seen


def test_running_revert_with_memory_and_delete_are_libvirts_own(newer):
    make, state = newer
    theirs = running_memory_revert_and_delete(make("python"))
    ours = running_memory_revert_and_delete(make("virtsnap"))
    assert ours == theirs
    running = libvirt.VIR_DOMAIN_RUNNING
    assert ours == [
        ["disk-1", "ram-1"],  # the disk as it was, and the RAM from the memory file
        # libvirt's own revert: its overlay `disk.<time>` on the snapshot's image (virtsnap's would be
        # disk.m1-revert1), the snapshot's overlay m1.qcow2 (the state dropped) removed by libvirt
        {"snapshots": ["m1"], "current": "m1", "state": running, "files": ["disk.<N>", "disk.qcow2", "m1.mem"],
         "chain": ["disk.<N>", "disk.qcow2"]},
        "disk.<N>",  # and libvirt re-pointed m1's own <disks> at it
        ["disk-3", "ram-3"],  # the delete lost nothing of the running guest
        # libvirt's own delete: the overlay committed into disk.qcow2, the memory file gone
        {"snapshots": [], "current": None, "state": running, "files": ["disk.qcow2"], "chain": ["disk.qcow2"]},
    ]
    assert not state.exists()  # virtsnap journaled nothing, recorded no file: both operations were libvirt's


def shut_off_revert_and_refused_deletes(domain: Domain) -> list[Any]:
    """Three disk-only snapshots, the domain shut off, reverted to the first (libvirt's own), then the deletes
    11.3 refuses; the view and libvirt's refusals (code, message) after each step."""
    dom = domain.dom
    seen: list[Any] = []
    dom.create()
    wait_for_agent(dom)
    for name, value in (("e1", "a"), ("e2", "b"), ("e3", "c")):
        mark(dom, value)
        dom.snapshotCreateXML(domain.ext(name), DISK_ONLY)
    mark(dom, "d")
    dom.destroy()
    dom.revertToSnapshot(domain.snap("e1"))
    seen.append(domain.view())
    for name, flags in (("e1", 0), ("e2", libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)):
        try:
            domain.snap(name).delete(flags)
            seen.append(("deleted", name, flags, domain.view()))
        except ERRORS as exc:
            seen.append(("refused", name, flags, exc.get_error_code(), exc.get_error_message()))
    dom.create()
    wait_for_agent(dom)
    seen.append(shell(dom, "cat /mnt/marker").split())  # a fresh boot: the disk only
    return seen


def test_shut_off_revert_is_libvirts_and_what_it_refuses_is_virtsnaps(newer):
    make, state = newer
    theirs = shut_off_revert_and_refused_deletes(make("python"))
    reverted = {"snapshots": ["e1", "e2", "e3"], "current": "e1", "state": libvirt.VIR_DOMAIN_SHUTOFF,
                "files": ["disk.<N>", "disk.qcow2", "e1.qcow2", "e2.qcow2"], "chain": ["disk.<N>", "disk.qcow2"]}
    refusals = [("refused", "e1", 0, libvirt.VIR_ERR_CONFIG_UNSUPPORTED, "unsupported configuration: deletion of "
                 "active external snapshot that is not a leaf snapshot is not supported"),
                ("refused", "e2", libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY, libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
                 "unsupported configuration: deletion of external children disk snapshots not supported")]
    assert theirs == [reverted, *refusals, ["disk-a"]]  # libvirt 11.3 on its own

    ours = make("virtsnap")
    seen = shut_off_revert_and_refused_deletes(ours)
    off = libvirt.VIR_DOMAIN_SHUTOFF
    assert seen == [
        reverted,  # the revert: libvirt's own, as through python3-libvirt
        # e1, which libvirt refuses: virtsnap's own delete. The domain's overlay and e2's image e1.qcow2 got
        # disk.qcow2's data (disk.qcow2 is not virtsnap's file: it stays, needed by nothing)
        ("deleted", "e1", 0, {"snapshots": ["e2", "e3"], "current": None, "state": off,
                              "files": ["disk.<N>", "disk.qcow2", "e1.qcow2", "e2.qcow2"], "chain": ["disk.<N>"]}),
        # CHILDREN_ONLY of e2, which libvirt refuses: virtsnap's own; e3 goes, e2 stays
        ("deleted", "e2", libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY,
         {"snapshots": ["e2"], "current": None, "state": off,
          "files": ["disk.<N>", "disk.qcow2", "e1.qcow2", "e2.qcow2"], "chain": ["disk.<N>"]}),
        ["disk-a"],  # the guest boots on what e1 saw
    ]
    assert chain(str(ours.images / "e1.qcow2")) == [str(ours.images / "e1.qcow2")]
    store = MetadataStore(state)  # virtsnap's own: its store was opened, and its journal is empty again
    try:
        assert store.journal_unfinished(ours.oracle.UUIDString()) == []
    finally:
        store.close()


def test_children_delete_reaching_external_snapshots_is_virtsnaps(newer):
    """CHILDREN of an external snapshot (11.3: "deletion of external children disk snapshots not supported")
    while the guest runs on the last one: virtsnap's own, the running guest loses nothing."""
    make, _state = newer
    ours = make("virtsnap")
    dom = ours.dom
    dom.create()
    wait_for_agent(dom)
    for name, value in (("c1", "a"), ("c2", "b")):
        mark(dom, value)
        dom.snapshotCreateXML(ours.ext(name), DISK_ONLY)
    mark(dom, "c")
    with pytest.raises(libvirt.libvirtError, match="external children disk snapshots not supported"):
        ours.oracle.snapshotLookupByName("c1").delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
    dom.snapshotLookupByName("c1").delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
    assert ours.oracle.snapshotListNames() == [] and markers(dom) == ["disk-c", "ram-c"]
    assert chain(source(ours.oracle)) == [ours.disk]


def tags(path: str) -> list[str]:
    out = subprocess.run(["qemu-img", "snapshot", "-U", "-l", path], capture_output=True, text=True, check=True)
    return [line.split()[1] for line in out.stdout.splitlines()[2:] if line.strip()]


def internal_in_overlay(domain: Domain) -> tuple[str, list[str]]:
    """A disk-only snapshot, the domain shut off, an internal snapshot (qemu-img) in the overlay the domain now
    writes; then the snapshot deleted. Its overlay and the tags left in any of the domain's images."""
    dom = domain.dom
    dom.create()
    wait_for_agent(dom)
    mark(dom, "a")
    dom.snapshotCreateXML(domain.ext("e1"), DISK_ONLY)
    mark(dom, "b")
    dom.destroy()
    overlay = source(domain.oracle)
    subprocess.run(["qemu-img", "snapshot", "-c", "keepme", overlay], check=True)
    domain.snap("e1").delete(0)
    return overlay, [t for f in domain.files() for t in tags(str(domain.images / f))]


def test_libvirts_delete_losing_an_internal_snapshot_is_refused(newer):
    make, _state = newer
    theirs = make("python")
    overlay, left = internal_in_overlay(theirs)
    assert left == [] and not os.path.exists(overlay)  # libvirt 11.3 merged the overlay away, keepme with it

    ours = make("virtsnap")
    with pytest.raises(virtsnap.libvirtError) as refused:
        internal_in_overlay(ours)
    assert refused.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    overlay = str(ours.images / "e1.qcow2")
    assert refused.value.get_error_message() == (
        f"Requested operation is not valid: internal snapshots keepme in {overlay}, which libvirt's delete of "
        "snapshot 'e1' would merge away and remove; delete them first. Nothing was changed")
    assert ours.oracle.snapshotListNames() == ["e1"] and tags(overlay) == ["keepme"]  # nothing changed
    assert chain(source(ours.oracle)) == [overlay, ours.disk]
    subprocess.run(["qemu-img", "snapshot", "-d", "keepme", overlay], check=True)
    ours.snap("e1").delete(0)  # without it: libvirt's own delete
    assert ours.oracle.snapshotListNames() == [] and chain(source(ours.oracle)) == [ours.disk]
    ours.dom.create()
    wait_for_agent(ours.dom)
    assert shell(ours.dom, "cat /mnt/marker").split() == ["disk-b"]

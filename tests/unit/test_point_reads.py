"""One snapshot read alone (issue 21): snapshot-current, -info, -parent and -dumpxml on the QEMU driver do
the same database work at 600 snapshots as at 20 (they never load the tree), and give the tree's answers.

Work is counted as sqlite virtual-machine steps (a progress handler on every store connection), not time.
"""

from __future__ import annotations

import contextlib
import io
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from qemu_offline import define_offline

import virtsnap
from virtsnap.cli import main as cli_main
from virtsnap.store import db

URI = "qemu:///session"


def redefine(dom: virtsnap.virDomain, name: str, parent: str | None, current: bool = False) -> None:
    parent_xml = f"<parent><name>{parent}</name></parent>" if parent else ""
    flags = virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
    if current:
        flags |= virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
    dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name><state>shutoff</state>{parent_xml}"
                          "<creationTime>1700000000</creationTime><memory snapshot='no'/>"
                          f"<disks><disk name='vda' snapshot='internal'/></disks>{dom.XMLDesc(0)}</domainsnapshot>",
                          flags)


def forest(dom: virtsnap.virDomain, count: int, seed: int = 1) -> None:
    """s0..s{count-1}: mostly a chain, every 7th branching off an earlier one, every 50th a new root; the
    current snapshot is the middle one."""
    rng = random.Random(seed)
    for i in range(count):
        parent = None if i % 50 == 0 else f"s{rng.randrange(i)}" if i % 7 == 0 else f"s{i - 1}"
        redefine(dom, f"s{i}", parent, current=i == count // 2)


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The state directory of two domains: 'small' with 20 snapshots, 'big' with 600 (read only by the tests)."""
    work = tmp_path_factory.mktemp("points")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIRTSNAP_QEMU_STATE_DIR", str(work / "state"))
        (work / "small").mkdir()
        (work / "big").mkdir()
        _, small, _ = define_offline(work / "small", "small")
        _, big, _ = define_offline(work / "big", "big")
        forest(small, 20)
        forest(big, 600)
        yield work / "state"


class Steps:
    """Counts the sqlite VM steps of every store connection opened while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps = 0
        real = sqlite3.connect

        def connect(*args: object, **kwargs: object) -> sqlite3.Connection:
            conn = real(*args, **kwargs)  # type: ignore[arg-type]
            conn.set_progress_handler(self._step, 1)
            return conn

        monkeypatch.setattr(db.sqlite3, "connect", connect)  # the module the store connects through

    def _step(self) -> int:
        self.steps += 1
        return 0


def cold(steps: Steps, command: str) -> tuple[int, str]:
    """Run one CLI command from a fresh connection; (VM steps it took, what it printed)."""
    before = steps.steps
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main.main(["-q", "-c", URI, command]) == 0
    return steps.steps - before, out.getvalue()


@pytest.mark.parametrize(("command", "shows"), [
    ("snapshot-current {dom}", "<domainsnapshot>"), ("snapshot-current {dom} --name", "s"),
    ("snapshot-info {dom} s19", "Name:           s19"), ("snapshot-info {dom} --current", "Current:        yes"),
    ("snapshot-parent {dom} s19", "s18"), ("snapshot-dumpxml {dom} s19", "<name>s19</name>")])
def test_one_snapshot_reads_do_not_grow_with_the_tree(domains, monkeypatch, command, shows):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(domains))
    steps = Steps(monkeypatch)
    small_steps, small_out = cold(steps, command.format(dom="small"))
    big_steps, big_out = cold(steps, command.format(dom="big"))
    assert small_steps > 0
    # 30 times the snapshots: loading the tree alone would take far more than twice the steps
    assert big_steps < 2 * small_steps, (small_steps, big_steps)
    assert shows in small_out and shows in big_out


def test_point_answers_equal_the_tree_answers(tmp_path, monkeypatch):
    """Lookup, current, parent, isCurrent, numChildren (and DESCENDANTS) and the XML agree with what the
    listing calls (answered from the whole tree) say, also after deletes moved children to their parent."""
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    _, big, _ = define_offline(tmp_path, "big")
    forest(big, 400, seed=2)
    big.snapshotLookupByName("s10").delete(0)  # children move up
    big.snapshotLookupByName("s200").delete(0)  # the current snapshot: its parent becomes current
    fresh = virtsnap.open(URI).lookupByName("big")
    for snap in fresh.listAllSnapshots(0):
        parent_xml = snap.getXMLDesc(0).split("<parent>\n    <name>")
        expected_parent = parent_xml[1].split("<")[0] if len(parent_xml) > 1 else None
        try:
            parent = snap.getParent(0).getName()
        except virtsnap.libvirtError as exc:
            assert exc.get_error_code() == virtsnap.VIR_ERR_NO_DOMAIN_SNAPSHOT
            parent = None
        assert parent == expected_parent
        assert snap.numChildren(0) == len(snap.listChildrenNames(0))
        desc = virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS
        assert snap.numChildren(desc) == len(snap.listChildrenNames(desc))
        assert snap.hasMetadata(0) == 1
    current = [s.getName() for s in fresh.listAllSnapshots(0) if s.isCurrent(0)]
    assert fresh.hasCurrentSnapshot(0) == len(current)
    if current:
        assert fresh.snapshotCurrent(0).getName() == current[0]
    with pytest.raises(virtsnap.libvirtError) as exc:
        fresh.snapshotLookupByName("s10", 0)
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_NO_DOMAIN_SNAPSHOT
    big.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    with pytest.raises(virtsnap.libvirtError) as exc:
        fresh.snapshotCurrent(0)
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_NO_DOMAIN

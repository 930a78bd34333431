"""The external-delete planner on real qcow2 files made with qemu-img (no guest): which steps it chooses,
in which order, what it removes, and what it refuses before any change."""

from __future__ import annotations

import subprocess

import pytest

from virtsnap.conf.domain_xml import DomainDef
from virtsnap.drivers.qemu import external
from virtsnap.drivers.qemu.extdelete import QemuView, Snapshot, Step, plan_delete
from virtsnap.errors import ErrorCode, libvirtError



@pytest.fixture(autouse=True)
def _fresh_chains():
    external.forget_chains()
    yield
    external.forget_chains()


def make(path, backing=None, tag: str | None = None) -> str:
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing:
        args += ["-F", "qcow2", "-b", str(backing)]
    subprocess.run([*args, str(path), "1M"], check=True)
    if tag:
        subprocess.run(["qemu-img", "snapshot", "-c", tag, str(path)], check=True)
    return str(path)


def domain(path: str) -> DomainDef:
    return DomainDef.parse(f"""<domain type='qemu'><name>d</name><memory>1024</memory><devices>
        <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{path}'/>
        <target dev='vda' bus='virtio'/></disk></devices></domain>""")


def ext(name: str, state: str, overlay: str, going: bool) -> Snapshot:
    return Snapshot(name, domain(state), ["vda"], [overlay], going)


@pytest.fixture
def chain3(tmp_path):
    """base <- o1 <- o2 <- o3: snapshots s1, s2, s3 (states base, o1, o2), the domain on o3."""
    base = make(tmp_path / "base.qcow2")
    o1 = make(tmp_path / "d.s1", base)
    o2 = make(tmp_path / "d.s2", o1)
    o3 = make(tmp_path / "d.s3", o2)
    return base, o1, o2, o3


def test_commit_of_an_intermediate_image_shut_off_and_running(chain3):
    base, o1, o2, o3 = chain3
    snaps = [ext("s1", base, o1, True), ext("s2", o1, o2, False), ext("s3", o2, o3, False)]
    plan = plan_delete(domain(o3), snaps, ["s1"], None, {o1, o2, o3})
    assert plan.steps == [Step("commit", o1, base, format="qcow2"), Step("set-backing", o2, base, format="qcow2")]
    assert plan.moved == {o1: (base, "qcow2")} and plan.remove == [o1]
    external.forget_chains()
    running = QemuView({"vda": [o3, o2, o1, base]}, {p: ["n"] for p in (o3, o2, o1, base)})
    plan = plan_delete(domain(o3), snaps, ["s1"], running, {o1, o2, o3})
    # QEMU's block-commit with top-node/base-node rewrites o2's header itself
    assert plan.steps == [Step("commit", o1, base, format="qcow2", how="intermediate", target="vda")]
    assert plan.released == {o1}


def test_children_delete_merges_leaf_first_and_follows_each_merge(chain3):
    base, o1, o2, o3 = chain3
    snaps = [ext("s1", base, o1, True), ext("s2", o1, o2, True), ext("s3", o2, o3, True)]
    running = QemuView({"vda": [o3, o2, o1, base]}, {p: ["n"] for p in (o3, o2, o1, base)})
    plan = plan_delete(domain(o3), snaps, ["s3", "s2", "s1"], running, {o1, o2, o3})
    assert [(s.image, s.base, s.how) for s in plan.steps] == [(o3, o2, "active"), (o2, o1, "active"),
                                                             (o1, base, "active")]
    assert plan.moved == {o3: (base, "qcow2"), o2: (base, "qcow2"), o1: (base, "qcow2")}
    assert sorted(plan.remove) == sorted([o1, o2, o3]) and plan.released == {o1, o2, o3}


def test_branches_running_stream_the_active_one_and_rebase_the_others(tmp_path):
    base = make(tmp_path / "base.qcow2")
    o1 = make(tmp_path / "d.s1", base)  # s2's state
    r1 = make(tmp_path / "d.s1-revert1", base)  # the domain, after a revert to s1
    snaps = [ext("s1", base, o1, True), ext("s2", o1, str(tmp_path / "d.s2"), False)]
    running = QemuView({"vda": [r1, base]}, {r1: ["top"], base: ["#b1"]})
    plan = plan_delete(domain(r1), snaps, ["s1"], running, {o1, base})
    assert plan.steps == [Step("rebase", o1, base, None, ""), Step("stream", r1, base, None, "", how="stream",
                                                                    target="vda")]
    assert plan.remove == [base] and plan.released == {base}  # removed only because it is listed as ours
    external.forget_chains()
    plan = plan_delete(domain(r1), snaps, ["s1"], running, {o1})
    assert plan.remove == []  # the user's own image stays


def test_internal_snapshots_that_a_merge_would_lose_are_refused(tmp_path):
    base = make(tmp_path / "base.qcow2")
    o1 = make(tmp_path / "d.s1", base, tag="I")
    snaps = [ext("s1", base, o1, True), Snapshot("I", domain(o1), [], [], False)]
    with pytest.raises(libvirtError) as info:
        plan_delete(domain(o1), snaps, ["s1"], None, {o1})
    assert info.value.get_error_code() == 84 and "I live in" in info.value.get_error_message()
    external.forget_chains()
    snaps[1].going = True  # deleted together with the external snapshot: nothing to keep
    assert plan_delete(domain(o1), snaps, ["s1"], None, {o1}).steps[0].kind == "commit"


def test_branch_with_internal_snapshot_is_not_rebased_under_it(tmp_path):
    base = make(tmp_path / "base.qcow2")
    o1 = make(tmp_path / "d.s1", base, tag="I")
    r1 = make(tmp_path / "d.s1-revert1", base)
    snaps = [ext("s1", base, o1, True), Snapshot("I", domain(o1), [], [], False),
             ext("s2", o1, str(tmp_path / "d.s2"), False)]
    with pytest.raises(libvirtError) as info:
        plan_delete(domain(r1), snaps, ["s1"], None, {o1})
    assert info.value.get_error_code() == ErrorCode.OPERATION_UNSUPPORTED and "read unchanged data" in info.value.get_error_message()


def test_qemu_graph_that_differs_from_the_definition_is_refused(chain3):
    base, o1, o2, o3 = chain3
    snaps = [ext("s1", base, o1, True), ext("s2", o1, o2, False), ext("s3", o2, o3, False)]
    wrong = QemuView({"vda": [o2, o1, base]}, {p: ["n"] for p in (o2, o1, base)})
    with pytest.raises(libvirtError) as info:
        plan_delete(domain(o3), snaps, ["s1"], wrong, {o1, o2, o3})
    assert info.value.get_error_code() == ErrorCode.OPERATION_INVALID and "not the domain's" in info.value.get_error_message()


def test_image_qemu_holds_outside_the_chain_is_not_rewritten_by_qemu_img(tmp_path):
    base = make(tmp_path / "base.qcow2")
    o1 = make(tmp_path / "d.s1", base)
    r1 = make(tmp_path / "d.s1-revert1", base)
    snaps = [ext("s1", base, o1, True), ext("s2", o1, str(tmp_path / "d.s2"), False)]
    stray = QemuView({"vda": [r1, base]}, {r1: ["top"], base: ["#b1"], o1: ["old"]})
    with pytest.raises(libvirtError) as info:
        plan_delete(domain(r1), snaps, ["s1"], stray, {o1})
    assert info.value.get_error_code() == ErrorCode.OPERATION_INVALID and "outside the disk's chain" in info.value.get_error_message()


def test_missing_image_of_a_remaining_snapshot_is_refused(chain3):
    base, o1, o2, o3 = chain3
    snaps = [ext("s1", base, o1, True), ext("s2", o1, o2, False), Snapshot("x", domain(o3 + ".gone"), [], [], False)]
    with pytest.raises(libvirtError) as info:
        plan_delete(domain(o3), snaps, ["s1"], None, {o1})
    assert info.value.get_error_code() == ErrorCode.OPERATION_INVALID and "missing" in info.value.get_error_message()

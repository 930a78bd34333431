"""The libvirt+<URI> driver against libvirt 9.0 itself: virsh on test:///default and virtsnap on
libvirt+test:///default print the same, and a missing libvirt-python is named with the extra to install."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import virtsnap

COMMANDS = ("snapshot-create-as test s1; snapshot-create-as test s2 --description two; snapshot-list test --tree; "
            "snapshot-current test --name; snapshot-revert test s1; snapshot-parent test s2; "
            "snapshot-delete test s1 --children-only; snapshot-list test --name; snapshot-delete test nosuch")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C", LANG="C")
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_cli_prints_what_virsh_prints() -> None:
    virsh = _run(["virsh", "-c", "test:///default", COMMANDS])
    ours = _run([sys.executable, "-m", "virtsnap", "-c", "libvirt+test:///default", COMMANDS])
    assert "s2" in virsh.stdout and "nosuch" in virsh.stderr  # the scenario ran, up to its failing last command
    assert (ours.returncode, ours.stdout, ours.stderr) == (virsh.returncode, virsh.stdout, virsh.stderr)


def test_errors_are_libvirts_own() -> None:
    conn = virtsnap.open("libvirt+test:///default")
    dom = conn.lookupByName("test")
    snap = dom.snapshotCreateXML("<domainsnapshot><name>only</name></domainsnapshot>")
    with pytest.raises(virtsnap.libvirtError) as missing:
        dom.snapshotLookupByName("gone")
    with pytest.raises(virtsnap.libvirtError) as root:
        snap.getParent()
    with pytest.raises(virtsnap.libvirtError) as nvram:  # the test driver's flag set, not virtsnap's
        dom.revertToSnapshot(snap, virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_RESET_NVRAM)
    found = [(e.value.get_error_code(), e.value.get_error_domain(), e.value.get_error_message())
             for e in (missing, root, nvram)]
    assert found == [
        (virtsnap.VIR_ERR_NO_DOMAIN_SNAPSHOT, virtsnap.VIR_FROM_TEST,
         "Domain snapshot not found: no domain snapshot with matching name 'gone'"),
        (virtsnap.VIR_ERR_NO_DOMAIN_SNAPSHOT, virtsnap.VIR_FROM_TEST,
         "Domain snapshot not found: snapshot 'only' does not have a parent"),
        (virtsnap.VIR_ERR_INVALID_ARG, virtsnap.VIR_FROM_TEST,
         "unsupported flags (0x8) in function testDomainRevertToSnapshot"),
    ]
    assert conn.getType() == "TEST" and dom.snapshotListNames() == ["only"]
    # libvirt keeps test:///default's state while any connection of the process is open: leave none behind
    snap.delete()
    conn.close()


def test_read_only_connection_changes_nothing() -> None:
    conn = virtsnap.openReadOnly("libvirt+test:///default")
    dom = conn.lookupByName("test")
    with pytest.raises(virtsnap.libvirtError) as denied:
        dom.snapshotCreateXML("<domainsnapshot><name>x</name></domainsnapshot>")
    assert denied.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_DENIED
    assert "x" not in dom.snapshotListNames()
    conn.close()


def test_missing_libvirt_python_names_the_extra() -> None:
    code = ("import sys; sys.modules['libvirt'] = None\n"
            "import virtsnap\n"
            "try:\n    virtsnap.open('libvirt+qemu:///system')\n"
            "except virtsnap.libvirtError as e:\n    print(e.get_error_code(), e)\n")
    out = _run([sys.executable, "-c", code])
    assert out.stdout.strip() == (
        f"{virtsnap.VIR_ERR_NO_CONNECT} no connection driver available for libvirt+qemu:///system (needs "
        "libvirt-python: install it with: pip install 'virtsnap[libvirt]', or use a Python that has Debian's "
        "python3-libvirt)"), out.stderr


def test_uri_without_inner_scheme_is_refused() -> None:
    with pytest.raises(virtsnap.libvirtError) as bad:
        virtsnap.open("libvirt+://x")
    assert bad.value.get_error_code() in (virtsnap.VIR_ERR_INVALID_ARG, virtsnap.VIR_ERR_NO_CONNECT)


def test_check_compares_libvirts_metadata_with_qcow2_tags_and_changes_nothing(tmp_path) -> None:
    """libvirt's test driver records internal snapshots without touching the image: the check sees that."""
    disk, fifo = tmp_path / "d.qcow2", tmp_path / "fifo"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    subprocess.run(["qemu-img", "snapshot", "-c", "stray", str(disk)], check=True)
    os.mkfifo(fifo)
    node = tmp_path / "node.xml"
    node.write_text(
        "<node><domain type='test'><name>t</name><memory>1024</memory><os><type>hvm</type></os><devices>"
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
        "<target dev='vda'/></disk>"
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{fifo}'/>"
        "<target dev='vdb'/></disk></devices></domain></node>")
    conn = virtsnap.open(f"libvirt+test://{node}")
    dom = conn.lookupByName("t")
    dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    before = disk.read_bytes()
    for flags in (0, virtsnap.VIR_DOMAIN_SNAPSHOT_CHECK_REPAIR):
        found = [(d.kind, d.subject, d.repaired) for d in dom.snapshotCheck(flags)]
        assert found == [("not-a-file", str(fifo), False), ("lost-snapshot", "s1", False),
                         ("untracked-snapshot", "stray", False)]
    assert disk.read_bytes() == before and dom.snapshotListNames() == ["s1"]
    conn.close()
    ro = virtsnap.openReadOnly(f"libvirt+test://{node}")
    with pytest.raises(virtsnap.libvirtError) as denied:
        ro.lookupByName("t").snapshotCheck(virtsnap.VIR_DOMAIN_SNAPSHOT_CHECK_REPAIR)
    assert denied.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_DENIED
    ro.close()

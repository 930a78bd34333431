"""An internal revert never rewrites an image that an external snapshot froze (QEMU driver, offline domain).

internal s1 in d.qcow2, then external s2 puts o.qcow2 on d.qcow2: from then on d.qcow2's content *is* s2's
disk. Applying s1 to d.qcow2 in place (what qemu-img snapshot -a, and libvirt's revert, do) would silently
replace s2's data; virtsnap refuses and changes nothing, and allows it again once s2 is deleted (merged)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from qemu_offline import define_offline

import virtsnap


def qemu_io(image: Path, command: str) -> str:
    proc = subprocess.run(["qemu-io", "--image-opts", f"driver=qcow2,file.filename={image}", "-c", command],
                          capture_output=True, text=True, check=True)
    return proc.stdout


def holds(image: Path, pattern: int) -> bool:
    return "Pattern verification failed" not in qemu_io(image, f"read -P {pattern:#x} 0 64k")


def test_an_internal_revert_never_rewrites_an_external_snapshots_disk(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn, dom, disk = define_offline(tmp_path, "frozen")
    try:
        s1 = dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
        qemu_io(disk, "write -P 0x22 0 64k")  # s2's disk content
        overlay = tmp_path / "o.qcow2"
        s2 = dom.snapshotCreateXML(f"<domainsnapshot><name>s2</name><disks><disk name='vda' snapshot='external'>"
                                   f"<source file='{overlay}'/></disk></disks></domainsnapshot>",
                                   virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
        qemu_io(overlay, "write -P 0x33 0 64k")
        with pytest.raises(virtsnap.libvirtError) as refused:
            dom.revertToSnapshot(s1)
        assert refused.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
        assert f"image {disk}" in str(refused.value) and "external snapshot 's2'" in str(refused.value)
        assert holds(disk, 0x22) and holds(overlay, 0x33)  # nothing changed
        assert dom.snapshotCurrent().getName() == "s2"
        dom.revertToSnapshot(s2)  # s2's disk is still s2's
        top = dom.XMLDesc().split("<source file='")[1].split("'")[0]
        assert holds(Path(top), 0x22)
        s2.delete()
        dom.revertToSnapshot(s1)  # once nothing reads d.qcow2 as a frozen layer, s1 applies there
        assert holds(disk, 0x00)
    finally:
        conn.close()

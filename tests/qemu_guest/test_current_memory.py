"""<currentMemory> below <memory> takes effect as in libvirt: the guest starts with its balloon inflated to the
target (QMP `balloon` at start), so QEMU reports that size and the guest itself sees less memory. Without a
virtio balloon nothing could apply it, and the definition is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu.monitor import Monitor

from .conftest import agent_for, domain_xml

pytestmark = pytest.mark.qemu
TARGET_MIB = 160


def _ballooned(guest, workdir: Path, balloon: bool = True) -> str:
    xml = domain_xml(guest, workdir, memory_mib=256)
    xml = xml.replace("<vcpu>", f"<currentMemory unit='MiB'>{TARGET_MIB}</currentMemory>\n  <vcpu>")
    return xml.replace("</devices>", "<memballoon model='virtio'/></devices>") if balloon else xml


def test_current_memory_inflates_the_balloon(guest, workdir, conn):
    dom = conn.defineXML(_ballooned(guest, workdir))
    assert dom.info()[1:3] == [256 * 1024, TARGET_MIB * 1024]  # maxMem, memory as virsh dominfo shows them
    dom.create()
    target = TARGET_MIB << 20
    mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "test")
    try:
        if mon.execute("query-balloon")["actual"] != target:  # the guest's driver inflates it once loaded
            mon.wait_event(lambda ev: ev.get("event") == "BALLOON_CHANGE" and ev["data"]["actual"] == target, 120)
        assert mon.execute("query-balloon")["actual"] == target
    finally:
        mon.close()
    with agent_for(conn, dom) as agent:
        mem_total_kib = int(agent.shell("sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo").strip())
    assert mem_total_kib < TARGET_MIB * 1024  # without the balloon this guest sees about 230 MiB
    dom.destroy()


def test_current_memory_without_a_balloon_is_refused(guest, workdir, conn):
    with pytest.raises(virtsnap.libvirtError) as err:
        conn.defineXML(_ballooned(guest, workdir, balloon=False))
    assert err.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    assert "<currentMemory>" in str(err.value) and "memballoon" in str(err.value)
    assert conn.listAllDomains() == []

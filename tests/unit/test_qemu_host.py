"""qemu:/// reports its host as libvirt's QEMU driver does: getVersion is QEMU's version in libvirt's numbering,
getInfo and getCapabilities describe this machine, the block stats group the domain's images."""

import os
import re
import shutil
import subprocess
from xml.etree import ElementTree

from qemu_offline import define_offline

import virtsnap


def test_qemu_host_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn, dom, disk = define_offline(tmp_path, "hostinfo", size="16M")
    binary = shutil.which("qemu-system-x86_64")
    shown = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    major, minor, micro = map(int, re.search(r"version (\d+)\.(\d+)\.(\d+)", shown).groups())
    assert conn.getVersion() == major * 1_000_000 + minor * 1000 + micro
    assert conn.getLibVersion() == virtsnap.getVersion() == 9_000_000

    model, memory_mib, cpus, _mhz, nodes, sockets, cores, threads = conn.getInfo()
    mem_kib = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal:")).split()[1])
    assert (model, memory_mib, cpus) == (os.uname().machine, mem_kib // 1024, os.cpu_count())
    assert nodes * sockets * cores * threads == cpus

    caps = ElementTree.fromstring(conn.getCapabilities())
    assert caps.findtext("host/cpu/arch") == os.uname().machine
    assert len(caps.findall("host/topology/cells/cell/cpus/cpu")) == cpus
    arch = caps.find("guest/arch")
    assert (caps.findtext("guest/os_type"), arch.get("name"), arch.findtext("emulator")) == ("hvm", "x86_64", binary)
    assert "pc" in [m.text for m in arch.findall("machine")]
    assert "qemu" in [d.get("type") for d in arch.findall("domain")]

    [(got_dom, stats)] = conn.domainListGetStats([dom], virtsnap.VIR_DOMAIN_STATS_STATE | virtsnap.VIR_DOMAIN_STATS_BLOCK)
    assert got_dom == dom
    assert stats["state.state"] == virtsnap.VIR_DOMAIN_SHUTOFF
    assert (stats["block.count"], stats["block.0.name"], stats["block.0.path"]) == (1, "vda", str(disk))
    assert stats["block.0.capacity"] == 16 * 1024 * 1024
    assert stats["block.0.physical"] == os.stat(disk).st_size
    dom.undefine()
    del dom, got_dom
    conn.close()

"""What the QEMU driver reports about its host: the hypervisor version (QEMU's), virNodeGetInfo's numbers and
a capabilities document in libvirt's shape (host CPU, NUMA topology, security model; the x86_64 guest).

Read from Linux's /proc and /sys and from the QEMU binary (argv.facts, cached); nothing here changes anything.
"""

from __future__ import annotations

import os
from xml.sax.saxutils import escape

from ..linuxhost import SYS_NODE, cpu_ids, host_uuid, meminfo_kib, nodes, topology
from ..linuxhost import node_info as node_info
from . import argv
from .process import qemu_binary


def hypervisor_version() -> int:
    """QEMU's version in libvirt's numbering (7.2.0 -> 7002000), as virConnectGetVersion gives it."""
    major, minor, micro = (*argv.facts(qemu_binary()).version, 0, 0, 0)[:3]
    return major * 1_000_000 + minor * 1000 + micro


def capabilities_xml(security_model: tuple[str, str] = ("none", "0")) -> str:
    """virConnectGetCapabilities for qemu:///: the host and the x86_64 hvm guest QEMU offers here."""
    info = node_info()
    cpus = cpu_ids()
    topo = {cpu: topology(cpu) for cpu in cpus}
    huge = meminfo_kib("Hugepagesize")
    pages = ["4"] + ([str(huge)] if huge else [])
    out = ["<capabilities>\n\n  <host>\n", f"    <uuid>{host_uuid()}</uuid>\n", "    <cpu>\n",
           f"      <arch>{escape(str(info[0]))}</arch>\n",
           f"      <topology sockets='{info[5]}' dies='1' cores='{info[6]}' threads='{info[7]}'/>\n"]
    out += [f"      <pages unit='KiB' size='{size}'/>\n" for size in pages]
    out += ["    </cpu>\n", "    <power_management/>\n", "    <iommu support='no'/>\n", "    <topology>\n"]
    numa = nodes()
    out.append(f"      <cells num='{len(numa)}'>\n")
    for node, node_cpus in numa.items():
        memory = meminfo_kib(f"Node {node} MemTotal", SYS_NODE / f"node{node}" / "meminfo") or \
            meminfo_kib("MemTotal")
        out += [f"        <cell id='{node}'>\n", f"          <memory unit='KiB'>{memory}</memory>\n",
                f"          <cpus num='{len(node_cpus)}'>\n"]
        for cpu in node_cpus:
            t = topo.get(cpu) or topology(cpu)
            out.append(f"            <cpu id='{cpu}' socket_id='{t['socket_id']}' die_id='{t['die_id']}' "
                       f"core_id='{t['core_id']}' siblings='{t['siblings']}'/>\n")
        out += ["          </cpus>\n", "        </cell>\n"]
    model, doi = security_model
    out += ["      </cells>\n", "    </topology>\n", "    <secmodel>\n", f"      <model>{escape(model)}</model>\n",
            f"      <doi>{escape(doi)}</doi>\n", "    </secmodel>\n", "  </host>\n\n"]
    binary = qemu_binary()
    out += ["  <guest>\n", "    <os_type>hvm</os_type>\n", "    <arch name='x86_64'>\n",
            "      <wordsize>64</wordsize>\n", f"      <emulator>{escape(binary)}</emulator>\n"]
    out += [f"      <machine>{escape(m)}</machine>\n" for m in sorted(argv.facts(binary).machines)]
    out.append("      <domain type='qemu'/>\n")
    if os.access("/dev/kvm", os.R_OK | os.W_OK):  # offered, as libvirt does; never chosen unless asked
        out.append("      <domain type='kvm'/>\n")
    out += ["    </arch>\n", "    <features>\n", "      <acpi default='on' toggle='yes'/>\n",
            "      <apic default='on' toggle='no'/>\n", "      <cpuselection/>\n", "      <deviceboot/>\n",
            "      <disksnapshot default='on' toggle='no'/>\n", "    </features>\n", "  </guest>\n\n",
            "</capabilities>\n"]
    return "".join(out)

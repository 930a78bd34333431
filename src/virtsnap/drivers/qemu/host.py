"""What the QEMU driver reports about its host: the hypervisor version (QEMU's), virNodeGetInfo's numbers and
a capabilities document in libvirt's shape (host CPU, NUMA topology, security model; the x86_64 guest).

Read from Linux's /proc and /sys and from the QEMU binary (argv.facts, cached); nothing here changes anything.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from xml.sax.saxutils import escape

from . import argv
from .process import qemu_binary

SYS_CPU = Path("/sys/devices/system/cpu")
SYS_NODE = Path("/sys/devices/system/node")


def hypervisor_version() -> int:
    """QEMU's version in libvirt's numbering (7.2.0 -> 7002000), as virConnectGetVersion gives it."""
    major, minor, micro = (*argv.facts(qemu_binary()).version, 0, 0, 0)[:3]
    return major * 1_000_000 + minor * 1000 + micro


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def _cpu_ids() -> list[int]:
    """The online CPUs (a range list such as 0-3,6)."""
    ids: list[int] = []
    for part in _read(SYS_CPU / "online", f"0-{(os.cpu_count() or 1) - 1}").split(","):
        lo, _, hi = part.partition("-")
        ids.extend(range(int(lo), int(hi or lo) + 1))
    return ids


def _topology(cpu: int) -> dict[str, str]:
    base = SYS_CPU / f"cpu{cpu}" / "topology"
    return {"socket_id": _read(base / "physical_package_id", "0"), "die_id": _read(base / "die_id", "0"),
            "core_id": _read(base / "core_id", str(cpu)), "siblings": _read(base / "thread_siblings_list", str(cpu))}


def _nodes() -> dict[int, list[int]]:
    """NUMA node -> its CPUs (one node with every CPU when the kernel shows none)."""
    nodes: dict[int, list[int]] = {}
    online = set(_cpu_ids())
    for entry in sorted(SYS_NODE.glob("node[0-9]*")):
        node = int(entry.name[4:])
        nodes[node] = sorted(int(c.name[3:]) for c in entry.glob("cpu[0-9]*") if int(c.name[3:]) in online)
    return nodes or {0: sorted(online)}


def _meminfo_kib(key: str, path: Path = Path("/proc/meminfo")) -> int:
    for line in _read(path).splitlines():
        if line.startswith(key + ":"):
            return int(line.split(":", 1)[1].split()[0])
    return 0


def node_info() -> list[object]:
    """virNodeGetInfo as libvirt-python returns it: [model, memory MiB, cpus, MHz, nodes, sockets per node,
    cores per socket, threads per core]."""
    cpus = _cpu_ids()
    topo = {cpu: _topology(cpu) for cpu in cpus}
    nodes = _nodes()
    sockets = {t["socket_id"] for t in topo.values()}
    cores = {(t["socket_id"], t["core_id"]) for t in topo.values()}
    threads = max(1, len(cpus) // max(1, len(cores)))
    mhz = 0
    for line in _read(Path("/proc/cpuinfo")).splitlines():
        if line.startswith("cpu MHz"):
            mhz = int(float(line.split(":")[1]))
            break
    return [platform.machine(), _meminfo_kib("MemTotal") // 1024, len(cpus), mhz, len(nodes),
            max(1, len(sockets) // len(nodes)), max(1, len(cores) // max(1, len(sockets))), threads]


def _host_uuid() -> str:
    raw = _read(Path("/sys/class/dmi/id/product_uuid")) or _read(Path("/etc/machine-id"))
    hexdigits = raw.replace("-", "").lower()
    if len(hexdigits) != 32:
        return "00000000-0000-0000-0000-000000000000"
    return "-".join((hexdigits[:8], hexdigits[8:12], hexdigits[12:16], hexdigits[16:20], hexdigits[20:]))


def capabilities_xml(security_model: tuple[str, str] = ("none", "0")) -> str:
    """virConnectGetCapabilities for qemu:///: the host and the x86_64 hvm guest QEMU offers here."""
    info = node_info()
    cpus = _cpu_ids()
    topo = {cpu: _topology(cpu) for cpu in cpus}
    huge = _meminfo_kib("Hugepagesize")
    pages = ["4"] + ([str(huge)] if huge else [])
    out = ["<capabilities>\n\n  <host>\n", f"    <uuid>{_host_uuid()}</uuid>\n", "    <cpu>\n",
           f"      <arch>{escape(str(info[0]))}</arch>\n",
           f"      <topology sockets='{info[5]}' dies='1' cores='{info[6]}' threads='{info[7]}'/>\n"]
    out += [f"      <pages unit='KiB' size='{size}'/>\n" for size in pages]
    out += ["    </cpu>\n", "    <power_management/>\n", "    <iommu support='no'/>\n", "    <topology>\n"]
    nodes = _nodes()
    out.append(f"      <cells num='{len(nodes)}'>\n")
    for node, node_cpus in nodes.items():
        memory = _meminfo_kib(f"Node {node} MemTotal", SYS_NODE / f"node{node}" / "meminfo") or \
            _meminfo_kib("MemTotal")
        out += [f"        <cell id='{node}'>\n", f"          <memory unit='KiB'>{memory}</memory>\n",
                f"          <cpus num='{len(node_cpus)}'>\n"]
        for cpu in node_cpus:
            t = topo.get(cpu) or _topology(cpu)
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

"""This Linux host as libvirt's drivers describe it: online CPUs and their topology, NUMA nodes, memory,
virNodeGetInfo's numbers and the host UUID. Read from /proc and /sys; used by the QEMU and VirtualBox drivers.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")
SYS_NODE = Path("/sys/devices/system/node")


def read_text(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def cpu_ids() -> list[int]:
    """The online CPUs (a range list such as 0-3,6)."""
    ids: list[int] = []
    for part in read_text(SYS_CPU / "online", f"0-{(os.cpu_count() or 1) - 1}").split(","):
        lo, _, hi = part.partition("-")
        ids.extend(range(int(lo), int(hi or lo) + 1))
    return ids


def topology(cpu: int) -> dict[str, str]:
    base = SYS_CPU / f"cpu{cpu}" / "topology"
    return {"socket_id": read_text(base / "physical_package_id", "0"), "die_id": read_text(base / "die_id", "0"),
            "core_id": read_text(base / "core_id", str(cpu)),
            "siblings": read_text(base / "thread_siblings_list", str(cpu))}


def nodes() -> dict[int, list[int]]:
    """NUMA node -> its CPUs (one node with every CPU when the kernel shows none)."""
    nodes: dict[int, list[int]] = {}
    online = set(cpu_ids())
    for entry in sorted(SYS_NODE.glob("node[0-9]*")):
        node = int(entry.name[4:])
        nodes[node] = sorted(int(c.name[3:]) for c in entry.glob("cpu[0-9]*") if int(c.name[3:]) in online)
    return nodes or {0: sorted(online)}


def meminfo_kib(key: str, path: Path = Path("/proc/meminfo")) -> int:
    for line in read_text(path).splitlines():
        if line.startswith(key + ":"):
            return int(line.split(":", 1)[1].split()[0])
    return 0


def node_info() -> list[object]:
    """virNodeGetInfo as libvirt-python returns it: [model, memory MiB, cpus, MHz, nodes, sockets per node,
    cores per socket, threads per core]."""
    cpus = cpu_ids()
    topo = {cpu: topology(cpu) for cpu in cpus}
    numa = nodes()
    sockets = {t["socket_id"] for t in topo.values()}
    cores = {(t["socket_id"], t["core_id"]) for t in topo.values()}
    threads = max(1, len(cpus) // max(1, len(cores)))
    mhz = 0
    for line in read_text(Path("/proc/cpuinfo")).splitlines():
        if line.startswith("cpu MHz"):
            mhz = int(float(line.split(":")[1]))
            break
    return [platform.machine(), meminfo_kib("MemTotal") // 1024, len(cpus), mhz, len(numa),
            max(1, len(sockets) // len(numa)), max(1, len(cores) // max(1, len(sockets))), threads]


def host_uuid() -> str:
    raw = read_text(Path("/sys/class/dmi/id/product_uuid")) or read_text(Path("/etc/machine-id"))
    hexdigits = raw.replace("-", "").lower()
    if len(hexdigits) != 32:
        return "00000000-0000-0000-0000-000000000000"
    return "-".join((hexdigits[:8], hexdigits[8:12], hexdigits[12:16], hexdigits[16:20], hexdigits[20:]))

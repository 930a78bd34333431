"""virConnectGetCapabilities' document for drivers whose host is described by a few facts (ESX, VirtualBox):
the host's architecture and UUID, and one <guest> per guest architecture, in libvirt's layout.

Formatting only: the drivers supply the facts.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

# (guest architecture, word size) libvirt's ESX and VirtualBox drivers offer on an x86_64 host
X86_GUESTS = (("i686", 32), ("x86_64", 64))


def format_capabilities(host_arch: str, host_uuid: str | None, domain_type: str,
                        guests: tuple[tuple[str, int], ...] = X86_GUESTS) -> str:
    out = ["<capabilities>\n\n  <host>\n"]
    if host_uuid:
        out.append(f"    <uuid>{escape(host_uuid)}</uuid>\n")
    out += ["    <cpu>\n", f"      <arch>{escape(host_arch)}</arch>\n", "    </cpu>\n", "    <power_management/>\n",
            "    <iommu support='no'/>\n", "  </host>\n\n"]
    for arch, wordsize in guests:
        out += ["  <guest>\n", "    <os_type>hvm</os_type>\n", f"    <arch name='{arch}'>\n",
                f"      <wordsize>{wordsize}</wordsize>\n", f"      <domain type='{escape(domain_type)}'/>\n",
                "    </arch>\n", "  </guest>\n\n"]
    out.append("</capabilities>\n")
    return "".join(out)


def version_number(text: str) -> int:
    """'7.0.14r161095' or '6.5.0' in libvirt's numbering (major * 1,000,000 + minor * 1000 + micro)."""
    import re

    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if match is None:
        return 0
    major, minor, micro = (int(g or 0) for g in match.groups())
    return major * 1_000_000 + minor * 1000 + micro

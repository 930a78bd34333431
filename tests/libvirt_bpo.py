"""A newer libvirtd for the tests: Debian's bookworm-backports libvirt (11.3), its .debs fetched with apt (its own
lists, not the system's) and unpacked, never installed, under ~/.cache/virtsnap/libvirt-bpo/<version>/.

Run as a script (`scripts/setup.sh test` does) to fetch it ahead of the tests; the tests call tree()."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import private_apt

SUITE = "bookworm-backports"
# What libvirtd with the QEMU driver needs from the newer libvirt (apt-cache depends of libvirt-daemon and
# libvirt-daemon-driver-qemu, less what bookworm's own packages provide at any version): the daemon, its
# library, the QEMU driver module, libvirt_iohelper (memory files) and the CPU map.
PACKAGES = ("libvirt0", "libvirt-common", "libvirt-daemon", "libvirt-daemon-common", "libvirt-daemon-log",
            "libvirt-daemon-driver-qemu")


def _fetch(tmp: Path, root: Path) -> Path:
    debs = tmp / "debs"
    debs.mkdir()
    debs.chmod(0o777)
    what = f"{SUITE}'s libvirt"
    private_apt.run(tmp, "apt-get", "update", what=what)
    shown = private_apt.run(tmp, "apt-cache", "show", "--no-all-versions", "libvirt-daemon", what=what)
    found = re.search(r"^Version: (\S+)$", shown, re.M)
    if found is None:
        raise RuntimeError(f"{SUITE} has no libvirt-daemon")
    version = found.group(1)
    private_apt.run(tmp, "apt-get", "download", *(f"{p}={version}" for p in PACKAGES), what=what,
                    cwd=debs)  # apt checks the hashes
    dest = root / version
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    (dest / "complete").write_text(f"{version}\n")
    return dest


def tree() -> Path:
    """The unpacked root (usr/sbin/libvirtd, usr/lib/..., usr/share/libvirt) of the newest libvirt fetched,
    fetching it once (about 3 MB of .debs)."""
    return private_apt.fetched("libvirt-bpo", "*", private_apt.sources("deb", SUITE), _fetch)


if __name__ == "__main__":
    where = tree()
    print(f"setup: libvirt {where.name} from {SUITE} in {where}", file=sys.stderr)

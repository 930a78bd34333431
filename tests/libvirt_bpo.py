"""A newer libvirtd for the tests: Debian's bookworm-backports libvirt (11.3), its .debs fetched with apt (its own
lists, not the system's) and unpacked, never installed, under ~/.cache/virtsnap/libvirt-bpo/<version>/.

Run as a script (`scripts/setup.sh test` does) to fetch it ahead of the tests; the tests call tree()."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = "bookworm-backports"
# What libvirtd with the QEMU driver needs from the newer libvirt (apt-cache depends of libvirt-daemon and
# libvirt-daemon-driver-qemu, less what bookworm's own packages provide at any version): the daemon, its
# library, the QEMU driver module, libvirt_iohelper (memory files) and the CPU map.
PACKAGES = ("libvirt0", "libvirt-common", "libvirt-daemon", "libvirt-daemon-common", "libvirt-daemon-log",
            "libvirt-daemon-driver-qemu")
SOURCES = (f"Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {SUITE}\nComponents: main\n"
           "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "virtsnap" / "libvirt-bpo"


def _cached(root: Path) -> Path | None:
    done = sorted(p.parent for p in root.glob("*/complete"))
    return done[-1] if done else None


def _apt(tmp: Path, tool: str, *args: str, cwd: Path | None = None) -> str:
    # Every apt state path points into tmp: the system's sources, lists, status and package cache stay untouched.
    opts = ["-o", f"Dir::Etc::SourceList={tmp / 'bpo.sources'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={tmp / 'lists'}", "-o", f"Dir::Cache={tmp / 'cache'}",
            "-o", "Dir::State::status=/dev/null", "-qq"]
    done = subprocess.run([tool, *opts, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{tool} {args[0]} for {SUITE}'s libvirt failed: {done.stderr.strip()}")
    return done.stdout


def _fetch(root: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="virtsnap-libvirt-bpo-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)  # apt downloads as its _apt user
        (tmp / "lists" / "partial").mkdir(parents=True)
        (tmp / "cache" / "archives" / "partial").mkdir(parents=True)
        (tmp / "bpo.sources").write_text(SOURCES)
        debs = tmp / "debs"
        debs.mkdir()
        debs.chmod(0o777)
        _apt(tmp, "apt-get", "update")
        shown = _apt(tmp, "apt-cache", "show", "--no-all-versions", "libvirt-daemon")
        found = re.search(r"^Version: (\S+)$", shown, re.M)
        if found is None:
            raise RuntimeError(f"{SUITE} has no libvirt-daemon")
        version = found.group(1)
        _apt(tmp, "apt-get", "download", *(f"{p}={version}" for p in PACKAGES), cwd=debs)  # apt checks the hashes
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
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions fetch once
        return _cached(root) or _fetch(root)


if __name__ == "__main__":
    where = tree()
    print(f"setup: libvirt {where.name} from {SUITE} in {where}", file=sys.stderr)

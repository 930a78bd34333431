"""libvirt 9.0's own test files, taken from Debian's source package for the test setup: fetched once with apt
(its own lists, not the system's), checked, and cached under ~/.cache/virtsnap/libvirt-source/<version>/."""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
from pathlib import Path

import private_apt

SUITE = "bookworm"
UPSTREAM = "9.0.0"
# libvirt-9.0.0 as its authors released it: the same file in every Debian revision of 9.0.0. Pinned so a
# mirror cannot hand the tests another libvirt; apt has already checked it against bookworm's signed Release.
ORIG_SHA256 = "deca5cff1b7baac297bca9663907c61f71a47183371dc7ac019c107806d5435a"
# What the tests read: the snapshot XML harness and its vector directories.
WANTED = ("tests/qemudomainsnapshotxml2xmltest.c", "tests/qemudomainsnapshotxml2xmlin/",
          "tests/qemudomainsnapshotxml2xmlout/")


def _dsc_checks(dsc: Path) -> dict[str, str]:
    """The .dsc's Checksums-Sha256 field: file name -> digest."""
    field = re.search(r"^Checksums-Sha256:\n((?: .*\n)+)", dsc.read_text(), re.M)
    if field is None:
        raise RuntimeError(f"{dsc.name} has no Checksums-Sha256")
    return {name: digest for digest, _size, name in (line.split() for line in field.group(1).splitlines())}


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fetch(tmp: Path, root: Path) -> Path:
    out = tmp / "out"
    out.mkdir()
    out.chmod(0o777)
    what = "libvirt's source package"
    private_apt.run(tmp, "apt-get", "update", what=what)
    private_apt.run(tmp, "apt-get", "source", "--download-only", "libvirt", what=what, cwd=out)
    (dsc,) = out.glob("libvirt_*.dsc")
    version = dsc.name.removeprefix("libvirt_").removesuffix(".dsc")
    if not version.startswith(f"{UPSTREAM}-"):
        raise RuntimeError(f"{SUITE} now carries libvirt {version}, not {UPSTREAM}: pin the snapshot archive")
    for file, digest in _dsc_checks(dsc).items():
        if _sha256(out / file) != digest:
            raise RuntimeError(f"{file} does not match the checksum in {dsc.name}")
    orig = out / f"libvirt_{UPSTREAM}.orig.tar.xz"
    if _sha256(orig) != ORIG_SHA256:
        raise RuntimeError(f"{orig.name} is not libvirt {UPSTREAM} as released")
    (debian,) = out.glob("libvirt_*.debian.tar.xz")
    with tarfile.open(debian) as tar:
        for member in tar.getmembers():
            if member.name.startswith("debian/patches/") and member.isfile():
                text = (tar.extractfile(member) or b"").read().decode(errors="replace")
                touched = [w for w in WANTED if f"/{w}" in text]
                if touched:
                    # The tests would need Debian's patched files, which this reader does not apply.
                    raise RuntimeError(f"Debian's {member.name} changes {', '.join(touched)}")
    dest = root / version
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    prefix = f"libvirt-{UPSTREAM}/"
    with tarfile.open(orig) as tar:
        members = [m for m in tar.getmembers()
                   if m.isfile() and m.name.startswith(prefix) and m.name[len(prefix):].startswith(WANTED)]
        for member in members:
            member.name = member.name[len(prefix):]
        tar.extractall(dest, members=members, filter="data")
    shutil.copy2(dsc, dest / dsc.name)
    (dest / "complete").write_text(f"{version}\n")
    return dest


def libvirt_source() -> Path:
    """Directory holding libvirt 9.0's tests/qemudomainsnapshotxml2xml{test.c,in,out}, fetching it once."""
    return private_apt.fetched("libvirt-source", f"{UPSTREAM}-*", private_apt.sources("deb-src", SUITE), _fetch)

#!/usr/bin/env python3
"""Build and cache the tiny test guest that virtsnap's QEMU tests boot.

The guest is Debian's own kernel (linux-image-amd64, the vmlinux unpacked from
its bzImage so QEMU boots it through the PVH entry point), an initramfs holding
busybox-static, the host's qemu-ga with the libraries it links, the virtio and
ext4 modules, and ``tests/guest/init``; plus a small ext4 qcow2 data disk
template.  Nothing is installed on the host except missing build tools.

Results are cached in ``~/.cache/virtsnap/guest/<key>/`` where the key hashes
every package version that goes into the guest and this script and the init
script, so a package upgrade or an edit triggers a rebuild.

    python3 tests/guest/build_guest.py [--force] [--cache-root DIR]

prints the JSON of the paths; ``build()`` returns the same as a ``Guest``.
"""

from __future__ import annotations

import argparse
import bz2
import dataclasses
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "init"

KERNEL_META_PACKAGE = "linux-image-amd64"
# Modules the init script and the tests need; their dependencies are resolved by modprobe. The TPM interfaces
# (tests/qemu_guest/test_tpm.py) are built into Debian's kernel (modprobe says "builtin": nothing to load).
# efivarfs: UEFI guests (OVMF boots the bzImage's EFI stub) read and write firmware variables through it.
GUEST_MODULES = ("virtio_pci", "virtio_blk", "virtio_console", "ext4", "tpm_tis", "tpm_crb", "efivarfs",
                 "virtio_balloon")
# virtio_balloon: tests/qemu_guest/test_current_memory.py (the guest gives memory back to its balloon).
QEMU_GA = "/usr/sbin/qemu-ga"
BUSYBOX = "/bin/busybox"
DATA_DISK_MIB = 64

# Kernel command line for -append. Under TCG every executed-once path costs translation time:
#   pci=noacpi         PCI IRQ routing from the BIOS table instead of slow ACPI LNK methods
#                      (ACPI stays on, so a guest poweroff still ends QEMU)
#   cryptomgr.notests  no crypto self-tests at boot
#   init_on_alloc=0    no zeroing of every allocation
#   rodata=off         skips marking rodata read-only and the W+X page table walk
#   noapictimer        no LAPIC timer calibration; the HPET ticks instead
# Measured together: boot to agent 5.8 -> 4.0 s of QEMU CPU (qemu64, qboot, 256 MiB).
# panic=-1 reboots at once on a panic (QEMU exits too with -no-reboot) so failures show fast.
KERNEL_CMDLINE = ("console=ttyS0 quiet panic=-1 "
                  "pci=noacpi cryptomgr.notests init_on_alloc=0 rodata=off noapictimer")

# Host package -> why the build needs it.
HOST_PACKAGES = {
    "busybox-static": "the guest's /bin/busybox",
    "qemu-guest-agent": "the guest's qemu-ga",
    "e2fsprogs": "mkfs.ext4 for the data disk",
    "kmod": "depmod and modprobe --show-depends",
    "qemu-utils": "qemu-img for the qcow2 template",
    "binutils": "objcopy to slim the modules",
}

# Make sbin tools findable when the caller's PATH lacks them (non-root shells).
_ENV = dict(os.environ, LC_ALL="C",
            PATH=os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin")


class BuildError(RuntimeError):
    """A build step failed; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Guest:
    """Paths of a built guest (all inside ``cache_dir``)."""

    kernel: str          # uncompressed vmlinux, booted through its PVH note
    bzimage: str         # the original compressed kernel, for comparison
    initrd: str          # cpio newc archive
    data_template: str   # 64 MiB qcow2 with an empty ext4 filesystem; copy before use
    cmdline: str         # what to pass to -append
    kernel_release: str  # e.g. 6.1.0-56-amd64
    key: str
    cache_dir: str


def run(args: list[str], *, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command without a shell, capturing text output; raise BuildError on failure."""
    try:
        proc = subprocess.run(args, cwd=cwd, env=_ENV, text=True, capture_output=True)
    except FileNotFoundError as exc:
        raise BuildError(f"{args[0]}: not found ({exc})") from None
    if check and proc.returncode != 0:
        raise BuildError(f"command failed (exit {proc.returncode}): {' '.join(args)}\n"
                         f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# --- host packages -----------------------------------------------------------

def package_versions(packages) -> dict[str, str | None]:
    """Installed version of each Debian package, None when not installed."""
    versions: dict[str, str | None] = dict.fromkeys(packages)
    if versions:
        # One call for all; unknown packages only add a complaint on stderr.
        out = run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status} ${Version}\n", *versions],
                  check=False).stdout
        for line in out.splitlines():
            pkg, status, version = [*line.split(" ", 2), "", ""][:3]
            if pkg in versions and status == "installed":
                versions[pkg] = version
    return versions


def _apt_get(args: list[str]) -> None:
    # Wait for a concurrent apt/dpkg instead of failing on its lock.
    run(["apt-get", "-o", "DPkg::Lock::Timeout=600", *args])


def ensure_host_packages(packages=HOST_PACKAGES) -> dict[str, str]:
    """Install whichever of ``packages`` is missing (apt-get runs only then); return versions."""
    versions = package_versions(packages)
    missing = sorted(p for p, v in versions.items() if v is None)
    if missing:
        if os.geteuid() != 0:
            raise BuildError(f"missing host packages (install as root): {' '.join(missing)}")
        print(f"build_guest: installing {' '.join(missing)}", file=sys.stderr)
        install = ["install", "-y", "--no-install-recommends", *missing]
        try:
            _apt_get(install)
        except BuildError:
            _apt_get(["update"])  # stale or absent package lists are the usual cause
            _apt_get(install)
        versions = package_versions(packages)
        still = [p for p, v in versions.items() if v is None]
        if still:
            raise BuildError(f"apt-get did not install: {' '.join(still)}")
    return versions  # type: ignore[return-value]


APT_LISTS = Path("/var/lib/apt/lists")


def resolve_kernel_package(cache_root: Path) -> tuple[str, str]:
    """(package, version) of the kernel image linux-image-amd64 currently depends on.

    apt-cache takes ~1 s per call without a pkgcache.bin, so the answer is memoised in
    ``cache_root`` for as long as the package lists are unchanged.
    """
    def lists_stamp() -> str:
        stats = [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(APT_LISTS.glob("*_Packages*"))]
        return hashlib.sha256(repr(stats).encode()).hexdigest()

    memo = cache_root / "kernel-package.json"
    try:
        saved = json.loads(memo.read_text())
        if saved["lists"] == lists_stamp():
            return saved["package"], saved["version"]
    except (OSError, ValueError, KeyError):
        pass

    def show() -> str:
        return run(["apt-cache", "show", "--no-all-versions", KERNEL_META_PACKAGE], check=False).stdout

    text = show()
    if "Depends:" not in text and os.geteuid() == 0:
        _apt_get(["update"])  # no package lists yet
        text = show()
    match = re.search(r"^Depends:.*?\b(linux-image-[^\s,]+-amd64) \(= ([^)\s]+)\)", text, re.M)
    if not match:
        raise BuildError(f"cannot resolve the kernel behind {KERNEL_META_PACKAGE} "
                         "(apt-cache show gave no 'linux-image-*-amd64 (= version)' dependency; "
                         "run apt-get update?)")
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"lists": lists_stamp(), "package": match.group(1), "version": match.group(2)}))
    os.replace(tmp, memo)
    return match.group(1), match.group(2)


# --- qemu-ga and its libraries ----------------------------------------------

def ldd_paths(binary: str) -> list[str]:
    """Every shared object ``binary`` loads, the dynamic loader included."""
    out = run(["ldd", binary]).stdout
    paths = []
    for line in out.splitlines():
        if "not found" in line:
            raise BuildError(f"ldd {binary}: {line.strip()}")
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            paths.append(match.group(1))
    if not paths:
        raise BuildError(f"ldd {binary} listed no libraries:\n{out}")
    return paths


def library_versions(paths: list[str]) -> dict[str, str]:
    """path -> 'package=version', or 'sha256=...' for files no package owns."""
    # Merged /usr: dpkg may know a library by its /usr/lib path rather than the /lib one ldd prints.
    candidates = {p: [p, "/usr" + p, os.path.realpath(p)] for p in paths}
    owners = {}
    out = run(["dpkg", "-S", *sorted({c for cs in candidates.values() for c in cs})], check=False).stdout
    for line in out.splitlines():
        pkg, sep, path = line.partition(": ")
        if sep and " " not in pkg:  # skips "diversion by ..." lines
            owners[path] = pkg.split(":")[0]
    versions = package_versions(sorted(set(owners.values())))
    result = {}
    for path in paths:
        pkg = next((owners[c] for c in candidates[path] if c in owners), None)
        if pkg and versions.get(pkg):
            result[path] = f"{pkg}={versions[pkg]}"
        else:
            result[path] = "sha256=" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return result


# --- cache key ----------------------------------------------------------------

def cache_key(host: dict[str, str], kernel: tuple[str, str], libs: dict[str, str]) -> tuple[str, dict]:
    """Hash of everything that determines the guest's content."""
    inputs = {
        "kernel": f"{kernel[0]}={kernel[1]}",
        "host": dict(sorted(host.items())),
        "libraries": dict(sorted(libs.items())),
        "build_guest.py": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "init": hashlib.sha256(INIT_SCRIPT.read_bytes()).hexdigest(),
    }
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16], inputs


# --- kernel -------------------------------------------------------------------

def _decompress(data: bytes, what: str) -> bytes:
    """Decompress by magic number; the kernel's own compressors cover every case here."""
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.BZ2Decompressor().decompress(data)
    if data[:3] == b"\x5d\x00\x00":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        ensure_host_packages({"zstd": "decompress zstd data"})
        proc = subprocess.run(["zstd", "-d", "-c", "-q"], input=data, env=_ENV, capture_output=True)
        if proc.returncode != 0:
            raise BuildError(f"zstd -d {what}: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout
    raise BuildError(f"{what}: unsupported compression (magic {data[:6].hex()})")


def extract_vmlinux(bzimage: Path) -> bytes:
    """The ELF vmlinux embedded in a bzImage (boot protocol >= 2.08 payload fields)."""
    data = bzimage.read_bytes()
    if data[0x202:0x206] != b"HdrS" or struct.unpack_from("<H", data, 0x206)[0] < 0x208:
        raise BuildError(f"{bzimage}: not a bzImage with boot protocol >= 2.08")
    setup_sects = data[0x1F1] or 4  # 0 means 4 in the boot protocol
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    vmlinux = _decompress(data[start:start + payload_length], f"{bzimage} payload")
    if vmlinux[:4] != b"\x7fELF":
        raise BuildError(f"{bzimage}: payload is not an ELF vmlinux")
    return vmlinux


def module_load_order(root: Path, release: str) -> list[Path]:
    """Module files to insmod, dependencies first, each once (softdeps included by modprobe)."""
    run(["depmod", "-b", str(root), release])
    order: list[Path] = []
    for module in GUEST_MODULES:
        out = run(["modprobe", "-d", str(root), "-S", release, "--show-depends", module]).stdout
        for line in out.splitlines():
            parts = line.split()
            if parts[:1] == ["insmod"]:
                path = Path(parts[1])
                # CPU-specific crypto (crc32c-intel) fails on qemu64 and the generic one is also listed.
                if "/arch/x86/crypto/" not in parts[1] and path not in order:
                    order.append(path)
            elif parts[:1] != ["builtin"]:
                raise BuildError(f"modprobe --show-depends {module}: unexpected line {line!r}")
    return order


def module_bytes(path: Path, scratch: Path) -> bytes:
    """Module content as busybox insmod takes it: plain ELF, without .BTF and signature.

    Parsing module BTF makes the kernel parse all of vmlinux's BTF, and checking the
    appended signature hashes the whole module: together ~0.4 s of TCG time. objcopy
    rewrites the ELF without .BTF and drops the appended signature; with
    MODULE_SIG_FORCE unset the kernel then only marks itself tainted.
    """
    data = path.read_bytes()
    if path.suffix in (".xz", ".zst", ".gz"):
        data = _decompress(data, str(path))
    plain = scratch / "module.ko"
    plain.write_bytes(data)
    run(["objcopy", "--remove-section=.BTF", str(plain)])
    return plain.read_bytes()


# --- initramfs ----------------------------------------------------------------

class Cpio:
    """A cpio "newc" archive writer, so device nodes and ownership need no root."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[int, bytes, int]] = {}  # path -> (mode, data, rdev)

    def _parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent and parent not in self.entries:
            self._parents(parent)
            self.entries[parent] = (0o040755, b"", 0)

    def dir(self, path: str, mode: int = 0o755) -> None:
        self._parents(path)
        self.entries[path] = (0o040000 | mode, b"", 0)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._parents(path)
        self.entries[path] = (0o100000 | mode, data, 0)

    def symlink(self, path: str, target: str) -> None:
        self._parents(path)
        self.entries[path] = (0o120777, target.encode(), 0)

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._parents(path)
        self.entries[path] = (0o020000 | mode, b"", os.makedev(major, minor))

    def dump(self) -> bytes:
        out = bytearray()

        def entry(ino: int, name: str, mode: int, data: bytes, rdev: int, nlink: int) -> None:
            raw = name.encode() + b"\0"
            fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0,
                      os.major(rdev), os.minor(rdev), len(raw), 0)
            out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
            out.extend(b"\0" * (-len(out) % 4))
            out.extend(data)
            out.extend(b"\0" * (-len(out) % 4))

        for ino, path in enumerate(sorted(self.entries), start=1):
            mode, data, rdev = self.entries[path]
            entry(ino, path, mode, data, rdev, 2 if mode & 0o040000 == 0o040000 else 1)
        entry(0, "TRAILER!!!", 0, b"", 0, 1)
        return bytes(out)


def build_initramfs(modules: list[Path], libs: list[str], scratch: Path) -> bytes:
    cpio = Cpio()
    for d in ("dev", "proc", "sys", "run", "tmp", "ram", "mnt", "root", "etc"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)  # init's stdio before devtmpfs is mounted
    cpio.chardev("dev/null", 1, 3, 0o666)
    cpio.file("bin/busybox", Path(BUSYBOX).read_bytes(), 0o755)
    applets = run([BUSYBOX, "--list-full"]).stdout.split()
    for applet in applets:
        if applet != "bin/busybox":
            cpio.symlink(applet, "/bin/busybox")
    cpio.file(QEMU_GA.lstrip("/"), Path(QEMU_GA).read_bytes(), 0o755)
    for lib in libs:
        cpio.file(lib.lstrip("/"), Path(lib).read_bytes(), 0o755)  # read_bytes follows symlinks
    names = []
    for module in modules:
        name = module.name.split(".ko")[0] + ".ko"
        cpio.file(f"lib/modules/{name}", module_bytes(module, scratch))
        names.append(name)
    cpio.file("lib/modules/load-order", ("\n".join(names) + "\n").encode())
    cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cpio.file("etc/group", b"root:x:0:\n")
    cpio.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    return cpio.dump()  # uncompressed: gzip made boot 0.2 s slower (inflating costs more than copying)


# --- data disk ----------------------------------------------------------------

def build_data_template(out: Path, scratch: Path) -> None:
    raw = scratch / "data.raw"
    with open(raw, "wb") as f:
        f.truncate(DATA_DISK_MIB * 1024 * 1024)
    # Initialise inode tables and journal now so the guest has no background ext4 writes.
    run(["mkfs.ext4", "-q", "-F", "-L", "virtsnap-data",
         "-E", "lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0", str(raw)])
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)])
    raw.unlink()


# --- build --------------------------------------------------------------------

def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "virtsnap" / "guest"


def _guest_from(cache_dir: Path) -> Guest:
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    return Guest(**{k: str(cache_dir / v) if k in ("kernel", "bzimage", "initrd", "data_template") else v
                    for k, v in manifest["guest"].items()}, cache_dir=str(cache_dir))


def _remove_stale_temps(cache_root: Path) -> None:
    """Delete temp dirs of builds whose process is gone (killed mid-build)."""
    for tmp in cache_root.glob(".tmp-*"):
        match = re.match(r"\.tmp-(\d+)-", tmp.name)
        if match:
            try:
                os.kill(int(match.group(1)), 0)
                continue  # still building
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        shutil.rmtree(tmp, ignore_errors=True)


def build(cache_root: str | os.PathLike | None = None, force: bool = False) -> Guest:
    """Return the cached guest, building it first when absent (or when ``force``)."""
    cache_root = Path(cache_root) if cache_root else default_cache_root()
    host = ensure_host_packages()
    kernel_pkg = resolve_kernel_package(cache_root)
    libs = ldd_paths(QEMU_GA)
    lib_versions = library_versions(libs)
    key, inputs = cache_key({p: host[p] for p in ("busybox-static", "qemu-guest-agent", "e2fsprogs")},
                            kernel_pkg, lib_versions)
    final = cache_root / key
    if (final / "manifest.json").exists() and not force:
        return _guest_from(final)
    cache_root.mkdir(parents=True, exist_ok=True)
    with open(cache_root / ".lock", "w") as lock:  # parallel test workers build once; the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "manifest.json").exists() and not force:
            return _guest_from(final)
        return _build_locked(cache_root, final, key, inputs, kernel_pkg, libs, force)


def _build_locked(cache_root: Path, final: Path, key: str, inputs, kernel_pkg, libs,  # type: ignore[no-untyped-def]
                  force: bool) -> Guest:
    _remove_stale_temps(cache_root)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=cache_root))
    try:
        scratch = tmp / "scratch"
        scratch.mkdir()
        sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []  # _apt cannot write the temp dir
        run(["apt-get", *sandbox, "download", f"{kernel_pkg[0]}={kernel_pkg[1]}"], cwd=scratch)
        debs = list(scratch.glob("*.deb"))
        if len(debs) != 1:
            raise BuildError(f"apt-get download {kernel_pkg[0]} left {len(debs)} .deb files")
        root = scratch / "root"
        run(["dpkg-deb", "-x", str(debs[0]), str(root)])
        releases = [p.name for p in (root / "lib/modules").iterdir()]
        bzimages = list((root / "boot").glob("vmlinuz-*"))
        if len(releases) != 1 or len(bzimages) != 1:
            raise BuildError(f"{debs[0].name}: expected one kernel, found {releases} {bzimages}")
        release = releases[0]

        shutil.copyfile(bzimages[0], tmp / "bzImage")
        (tmp / "vmlinux").write_bytes(extract_vmlinux(bzimages[0]))
        modules = module_load_order(root, release)
        (tmp / "initrd").write_bytes(build_initramfs(modules, libs, scratch))
        build_data_template(tmp / "data.qcow2", scratch)
        shutil.rmtree(scratch)
        os.chmod(tmp, 0o755)  # mkdtemp made it private; QEMU may run as another user

        guest = {"kernel": "vmlinux", "bzimage": "bzImage", "initrd": "initrd",
                 "data_template": "data.qcow2", "cmdline": KERNEL_CMDLINE,
                 "kernel_release": release, "key": key}
        (tmp / "manifest.json").write_text(json.dumps({"guest": guest, "inputs": inputs}, indent=2))
        old = None
        if force and final.exists():
            old = final.with_name(f".tmp-{os.getpid()}-old")  # a stale-temp name: cleaned even if killed
            os.rename(final, old)
        try:
            os.rename(tmp, final)  # atomic: the cache dir is complete or absent
        except OSError:
            if not (final / "manifest.json").exists():
                raise
            shutil.rmtree(tmp)  # a concurrent build finished first; use its result
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _guest_from(final)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--cache-root", help="default: ~/.cache/virtsnap/guest")
    args = parser.parse_args(argv)
    # SIGTERM as SystemExit, so build() still removes its temp dir on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        guest = build(args.cache_root, force=args.force)
    except BuildError as exc:
        print(f"build_guest: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(dataclasses.asdict(guest), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

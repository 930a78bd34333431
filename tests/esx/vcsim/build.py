#!/usr/bin/env python3
"""Build govmomi's vCenter simulator (vcsim) from Debian packages, cached.

Debian 12 ships the simulator *library* (golang-github-vmware-govmomi-dev
0.24.2) but no ``vcsim`` command, and the machine has no Go module proxy.  So
this script:

1. makes sure the Debian packages golang-go, golang-github-vmware-govmomi-dev
   and patch are installed (apt-get runs only when one is missing);
2. copies Debian's govmomi source into a throw-away GOPATH and applies
   ``govmomi-0.24.2.patch`` (the system copy is never modified);
3. builds ``main.go`` in GOPATH mode with the network off;
4. caches the binary at ``~/.cache/virtsnap/vcsim/<key>/vcsim`` where <key>
   hashes every input (package versions, Go version, main.go, the patch and
   this file), so a change to any of them triggers a rebuild and nothing else
   does.

Usage: ``python3 tests/esx/vcsim/build.py [--force]`` prints the binary path.
From Python: ``from build import ensure_vcsim; path = ensure_vcsim()``.
Standard library only, so it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAIN_GO = HERE / "main.go"
PATCH = HERE / "govmomi-0.24.2.patch"

GOVMOMI_PKG = "golang-github-vmware-govmomi-dev"
# patch is needed to apply PATCH; it is tiny and usually present already.
PACKAGES = ("golang-go", GOVMOMI_PKG, "patch")
# The packages whose versions decide what gets compiled (patch only applies
# text, so its version does not matter).
KEY_PACKAGES = ("golang-go", GOVMOMI_PKG)

GOVMOMI_SRC = Path("/usr/share/gocode/src/github.com/vmware/govmomi")
SYSTEM_GOPATH = "/usr/share/gocode"
# Import path main.go is built as inside the temporary GOPATH.
MAIN_PKG = "virtsnap-vcsim"


class BuildError(RuntimeError):
    """The packages or the binary could not be provided."""


def log(msg: str) -> None:
    # stdout is reserved for the binary path (the CLI's result).
    print(f"vcsim-build: {msg}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "virtsnap" / "vcsim"


def installed_version(pkg: str) -> str | None:
    """The installed Debian version of pkg, or None if it is not installed."""
    res = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}\t${Version}", pkg],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        return None
    status, _, version = res.stdout.partition("\t")
    # "deinstall ok config-files" etc. leave a version behind; only count
    # fully installed packages.
    return version if status.endswith(" installed") and version else None


def ensure_packages() -> dict[str, str]:
    """Install missing packages with apt-get; return {package: version}."""
    missing = [p for p in PACKAGES if installed_version(p) is None]
    if missing:
        if os.geteuid() != 0:
            raise BuildError(
                f"missing Debian packages {missing}; run as root or "
                f"`sudo apt-get install {' '.join(missing)}`"
            )
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        log(f"installing {missing}")
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            # Most likely stale package lists (fresh container): refresh once.
            log("apt-get install failed; running apt-get update and retrying")
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(cmd, env=env, check=True)
    versions = {p: installed_version(p) for p in PACKAGES}
    still_missing = [p for p, v in versions.items() if v is None]
    if still_missing:
        raise BuildError(f"packages still missing: {still_missing}")
    if not GOVMOMI_SRC.is_dir():
        raise BuildError(f"{GOVMOMI_SRC} not found despite {GOVMOMI_PKG}")
    return versions  # type: ignore[return-value]


def go_version() -> str:
    # golang-go is a metapackage: a point release of golang-1.19-go would not
    # change its version, so hash the compiler's own version string as well.
    res = subprocess.run(["go", "version"], capture_output=True, text=True, check=True)
    return res.stdout.strip()


def cache_key(versions: dict[str, str]) -> str:
    h = hashlib.sha256()
    for pkg in KEY_PACKAGES:
        h.update(f"{pkg}={versions[pkg]}\n".encode())
    h.update(f"go={go_version()}\n".encode())
    for path in (MAIN_GO, PATCH, Path(__file__).resolve()):
        h.update(f"{path.name}\n".encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def go_env(gopath: Path, gocache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        # GOPATH mode: Debian's /usr/share/gocode is a GOPATH tree, and there
        # is no module proxy to resolve go.mod requirements from anyway.
        GO111MODULE="off",
        GOPROXY="off",
        GOFLAGS="",  # ignore any user-level flags such as -mod=...
        # The patched copy comes first, so it shadows the system govmomi.
        GOPATH=f"{gopath}{os.pathsep}{SYSTEM_GOPATH}",
        GOCACHE=str(gocache),
        # Pure-Go build: no dependency on a C compiler, static binary.
        CGO_ENABLED="0",
    )
    return env


def build(out: Path, workdir: Path, gocache: Path) -> None:
    """Compile the patched vcsim into `out` using `workdir` as scratch."""
    gopath = workdir / "gopath"
    dst = gopath / "src" / "github.com" / "vmware" / "govmomi"
    # symlinks=True keeps any links as links instead of following them.
    shutil.copytree(GOVMOMI_SRC, dst, symlinks=True)
    # --fuzz=0 and --forward: refuse to guess if Debian's source ever changes,
    # rather than silently producing a differently patched simulator.
    with PATCH.open("rb") as patch_in:
        subprocess.run(
            ["patch", "-p1", "--batch", "--forward", "--fuzz=0",
             "--no-backup-if-mismatch", "-d", str(dst)],
            stdin=patch_in,
            stdout=subprocess.DEVNULL,
            check=True,
        )
    main_dir = gopath / "src" / MAIN_PKG
    main_dir.mkdir(parents=True)
    shutil.copy2(MAIN_GO, main_dir / "main.go")
    subprocess.run(
        # -trimpath: the temp dir name must not leak into the binary.
        ["go", "build", "-trimpath", "-o", str(out), MAIN_PKG],
        env=go_env(gopath, gocache),
        cwd=main_dir,
        check=True,
    )


@contextlib.contextmanager
def build_lock(root: Path):
    # Serialises concurrent builders (e.g. pytest-xdist workers) so the cold
    # build runs once and the others then find it cached.
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prune_old(root: Path, keep: Path) -> None:
    """Delete binaries built from older inputs (~26 MB each); keep the Go cache."""
    for entry in root.iterdir():
        # Key directories are 16 hex digits; leave gocache, .lock and build-*.
        if entry.is_dir() and entry != keep and len(entry.name) == 16 and all(
            ch in "0123456789abcdef" for ch in entry.name
        ):
            shutil.rmtree(entry, ignore_errors=True)


def ensure_vcsim(force: bool = False) -> Path:
    """Return the path of a built, patched vcsim binary (building if needed)."""
    versions = ensure_packages()
    root = cache_root()
    key = cache_key(versions)
    target = root / key / "vcsim"
    if target.is_file() and not force:
        return target
    with build_lock(root):
        if target.is_file() and not force:  # another process built it meanwhile
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        log(f"building {target} (govmomi {versions[GOVMOMI_PKG]}, {go_version()})")
        # Scratch space inside the cache root: same filesystem as target, so
        # the final os.replace is an atomic rename and a crash never leaves a
        # half-written binary at the target path.
        with tempfile.TemporaryDirectory(prefix="build-", dir=root) as tmp:
            tmp_out = Path(tmp) / "vcsim"
            build(tmp_out, Path(tmp), root / "gocache")
            os.replace(tmp_out, target)
        log(f"built in {time.monotonic() - start:.1f}s")
        prune_old(root, keep=target.parent)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        path = ensure_vcsim(force=args.force)
    except (BuildError, subprocess.CalledProcessError) as exc:
        log(f"error: {exc}")
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""apt for the test setup's own downloads (libvirt's source package, bookworm-backports' libvirt): one sources
file and every apt state path inside a temporary directory, so the system's sources, lists, status and package
cache stay untouched; results cached under ~/.cache/virtsnap/<name>/<version>/, fetched once across sessions."""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

SIGNED_BY = "/usr/share/keyrings/debian-archive-keyring.gpg"


def sources(kind: str, suite: str) -> str:
    """A deb822 sources entry of Debian's main archive ('deb' or 'deb-src')."""
    return (f"Types: {kind}\nURIs: http://deb.debian.org/debian\nSuites: {suite}\nComponents: main\n"
            f"Signed-By: {SIGNED_BY}\n")


def run(tmp: Path, tool: str, *args: str, what: str, cwd: Path | None = None) -> str:
    """apt-get or apt-cache with the sources and state of `tmp` (prepared by fetched()); stdout."""
    opts = ["-o", f"Dir::Etc::SourceList={tmp / 'private.sources'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={tmp / 'lists'}", "-o", f"Dir::Cache={tmp / 'cache'}",
            "-o", "Dir::State::status=/dev/null", "-qq"]
    done = subprocess.run([tool, *opts, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{tool} {args[0]} for {what} failed: {done.stderr.strip()}")
    return done.stdout


def fetched(name: str, pattern: str, entry: str, fetch: Callable[[Path, Path], Path]) -> Path:
    """The newest complete ~/.cache/virtsnap/<name>/<pattern> (a version directory holding 'complete'), or
    fetch(tmp, root) run once under a lock (parallel sessions fetch once) in a temporary directory apt can
    write into, whose sources file holds `entry`."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "virtsnap" / name
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = sorted(p.parent for p in root.glob(f"{pattern}/complete"))
        if done:
            return done[-1]
        with tempfile.TemporaryDirectory(prefix=f"virtsnap-{name}-") as tmp_name:
            tmp = Path(tmp_name)
            tmp.chmod(0o755)  # apt downloads as its _apt user
            (tmp / "lists" / "partial").mkdir(parents=True)
            (tmp / "cache" / "archives" / "partial").mkdir(parents=True)
            (tmp / "private.sources").write_text(entry)
            return fetch(tmp, root)

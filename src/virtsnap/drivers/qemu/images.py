"""qemu-img: internal snapshots of images that no QEMU has open, and image facts.

Argument lists only; failures become VIR_ERR_OPERATION_FAILED with qemu-img's own message.
"""

from __future__ import annotations

import os
from typing import Any

from ...errors import ErrorCode, ErrorDomain, error

ERR = ErrorDomain.QEMU


def qemu_img() -> str:
    import shutil  # shutil and subprocess: only for commands that run qemu-img

    path = os.environ.get("VIRTSNAP_QEMU_IMG") or shutil.which("qemu-img")
    if not path:
        raise error(ErrorCode.OPERATION_FAILED, ERR, "qemu-img not found (install Debian's qemu-utils)")
    return path


def run(args: list[str], timeout: float = 600.0) -> str:
    import subprocess

    proc = subprocess.run([qemu_img(), *args], capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise error(ErrorCode.OPERATION_FAILED, ERR,
                    f"qemu-img {args[0]}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def info(path: str, force_share: bool = False) -> dict[str, Any]:
    import json

    args = ["info", "--output=json"] + (["-U"] if force_share else []) + [path]
    result: dict[str, Any] = json.loads(run(args))
    return result


def snapshots(path: str, force_share: bool = False) -> list[str]:
    """Names (tags) of the internal snapshots stored in a qcow2 image."""
    return [s["name"] for s in info(path, force_share).get("snapshots", [])]


def snapshot_create(path: str, tag: str) -> None:
    run(["snapshot", "-c", tag, path])


def snapshot_apply(path: str, tag: str) -> None:
    """Revert the image to the snapshot named `tag`. qemu-img's -a looks a snapshot up by ID before name, so
    a tag such as "1" could select another snapshot whose ID is 1: the snapshot is applied by its own ID."""
    ids = [s["id"] for s in info(path).get("snapshots", []) if s.get("name") == tag]
    if len(ids) != 1:
        raise error(ErrorCode.OPERATION_INVALID, ERR, f"image {path} has {len(ids)} snapshots named '{tag}'")
    run(["snapshot", "-a", str(ids[0]), path])


def id_clash(path: str, tag: str, force_share: bool = True) -> str | None:
    """The name of another snapshot in the image whose ID is `tag` (QEMU's loads look IDs up first), or None."""
    if not tag.isdigit():  # qcow2 snapshot IDs are decimal numbers
        return None
    for snap in info(path, force_share).get("snapshots", []):
        if str(snap.get("id")) == tag and snap.get("name") != tag:
            return str(snap.get("name"))
    return None


def snapshot_delete(path: str, tag: str) -> None:
    run(["snapshot", "-d", tag, path])

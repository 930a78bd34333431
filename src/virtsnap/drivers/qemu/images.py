"""qemu-img: internal snapshots of images that no QEMU has open, and image facts.

Argument lists only, and every call names the image's format (never probed: a raw disk whose guest wrote a
qcow2 header stays raw); failures become VIR_ERR_OPERATION_FAILED with qemu-img's own message.
"""

from __future__ import annotations

import os

from ...errors import ErrorCode, ErrorDomain, error

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

ERR = ErrorDomain.QEMU


def qemu_img() -> str:
    import shutil  # shutil and subprocess: only for commands that run qemu-img

    path = os.environ.get("VIRTSNAP_QEMU_IMG") or shutil.which("qemu-img")
    if not path:
        raise error(ErrorCode.OPERATION_FAILED, ERR, "qemu-img not found (install Debian's qemu-utils)")
    return path


def run(args: list[str], timeout: float = 600.0) -> str:
    import subprocess

    try:
        proc = subprocess.run([qemu_img(), *args], capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise error(ErrorCode.OPERATION_TIMEOUT, ERR, f"qemu-img {args[0]} did not finish in {timeout:g} s") from None
    if proc.returncode != 0:
        raise error(ErrorCode.OPERATION_FAILED, ERR,
                    f"qemu-img {args[0]}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def openable(path: str) -> None:
    """An image qemu-img may open: a regular file or a block device. A FIFO would block qemu-img until its
    timeout, and a character device is no image: both refused before qemu-img runs."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"image {path}: {exc.strerror}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"image {path} is not a regular file or block device")


def info(path: str, format: str, force_share: bool = False, timeout: float = 600.0) -> dict[str, Any]:
    """qemu-img info of this one file, read as `format` (its backing file is not opened)."""
    import json

    openable(path)
    args = ["info", "-f", format, "--output=json"] + (["-U"] if force_share else []) + ["--", path]
    result: dict[str, Any] = json.loads(run(args, timeout))
    return result


def qcow2_spec(path: str) -> str:
    """The image as qemu-img's json: filename: format named, backing never opened (internal snapshots are in
    the file itself), the path a JSON string, so no character in it means anything to qemu-img."""
    import json

    return "json:" + json.dumps({"driver": "qcow2", "backing": None, "file": {"driver": "file", "filename": path}})


def snapshots(path: str, force_share: bool = False) -> list[str]:
    """Names (tags) of the internal snapshots stored in a qcow2 image."""
    return [s["name"] for s in info(path, "qcow2", force_share).get("snapshots", [])]


def snapshot_create(path: str, tag: str) -> None:
    openable(path)
    run(["snapshot", "-q", "-c", tag, qcow2_spec(path)])


def snapshot_apply(path: str, tag: str) -> None:
    """Revert the image to the snapshot named `tag`. qemu-img's -a looks a snapshot up by ID before name, so
    a tag such as "1" could select another snapshot whose ID is 1: the snapshot is applied by its own ID."""
    ids = [s["id"] for s in info(path, "qcow2").get("snapshots", []) if s.get("name") == tag]
    if len(ids) != 1:
        raise error(ErrorCode.OPERATION_INVALID, ERR, f"image {path} has {len(ids)} snapshots named '{tag}'")
    run(["snapshot", "-q", "-a", str(ids[0]), qcow2_spec(path)])


def id_clash(path: str, tag: str, force_share: bool = True) -> str | None:
    """The name of another snapshot in the image whose ID is `tag` (QEMU's loads look IDs up first), or None."""
    if not tag.isdigit():  # qcow2 snapshot IDs are decimal numbers
        return None
    for snap in info(path, "qcow2", force_share).get("snapshots", []):
        if str(snap.get("id")) == tag and snap.get("name") != tag:
            return str(snap.get("name"))
    return None


def snapshot_delete(path: str, tag: str) -> None:
    openable(path)
    run(["snapshot", "-q", "-d", tag, qcow2_spec(path)])

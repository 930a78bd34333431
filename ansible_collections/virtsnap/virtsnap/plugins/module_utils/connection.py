# -*- coding: utf-8 -*-
"""What the virtsnap.virtsnap modules share: importing virtsnap on the managed host, opening a connection, and
turning a libvirt error into the task's failure (its code and domain kept)."""

from __future__ import annotations

from typing import Any


def import_virtsnap(module: Any) -> Any:
    """The virtsnap package of the managed host's interpreter, or the task fails naming what is missing."""
    try:
        import virtsnap
    except ImportError:
        module.fail_json(msg="virtsnap is not installed for this host's Python interpreter")
    return virtsnap


def fail(module: Any, exc: Any) -> None:
    """A libvirtError as the task's failure: libvirt's message, code and domain."""
    module.fail_json(msg=str(exc), code=exc.get_error_code(), domain=exc.get_error_domain())


def snapshot_size(virtsnap: Any, snap: Any) -> Any:
    """getSize() of a snapshot, or None where the driver cannot tell (VIR_ERR_NO_SUPPORT)."""
    try:
        return snap.getSize()
    except virtsnap.libvirtError as exc:
        if exc.get_error_code() == virtsnap.VIR_ERR_NO_SUPPORT:
            return None
        raise

"""`virtsnap serve`: a web view of snapshot trees over the public API (any driver, remote URIs included).

Optional: needs the `web` extra (Starlette, uvicorn); `missing_extra()` names what is absent.
"""

from __future__ import annotations

import importlib

EXTRA_MODULES = ("starlette", "uvicorn")


def missing_extra() -> str | None:
    """None when the web extra is installed, else the message that says how to install it."""
    absent = []
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            absent.append(name)
    if not absent:
        return None
    return (f"virtsnap serve needs the 'web' extra: pip install 'virtsnap[web]' "
            f"(missing: {', '.join(absent)})")

"""MkDocs hooks: pages written from the code at build time, so they cannot drift from it.

docs/reference/cli.md is replaced by the CLI reference (virtsnap.cli.reference); a `<!-- virtsnap:driver-flags -->`
marker by the table of flags each driver accepts, read from the drivers' capability tables.
"""

from __future__ import annotations

import importlib
from typing import Any

from virtsnap.cli import reference
from virtsnap.drivers.base import Op
from virtsnap.flags import SnapshotCreate, SnapshotDelete, SnapshotRevert

# URI scheme -> driver module, in the order the site presents them.
DRIVERS = (("test", "virtsnap.drivers.test.driver"), ("qemu", "virtsnap.drivers.qemu.driver"),
           ("esx / vpx", "virtsnap.drivers.esx.driver"), ("vbox", "virtsnap.drivers.vbox.driver"))
TABLES = ((Op.SNAPSHOT_CREATE, "VIR_DOMAIN_SNAPSHOT_CREATE_", SnapshotCreate),
          (Op.REVERT, "VIR_DOMAIN_SNAPSHOT_REVERT_", SnapshotRevert),
          (Op.SNAPSHOT_DELETE, "VIR_DOMAIN_SNAPSHOT_DELETE_", SnapshotDelete))
VERBS = (("snapshot-check (`snapshotCheck`)", "snapshot_check"),
         ("rename (`snapshot-edit` of the name)", "snapshot_rename"))


def driver_flags() -> str:
    """One table: a row per flag of create, revert and delete, a column per driver, ✓ where it is accepted."""
    caps = []
    classes = []
    for _, module_name in DRIVERS:
        module = importlib.import_module(module_name)
        caps.append(module.CAPABILITIES)
        classes.append([v for v in vars(module).values() if getattr(v, "capabilities", None) is module.CAPABILITIES])
    out = ["| | " + " | ".join(name for name, _ in DRIVERS) + " |\n", "|---|" + ":-:|" * len(DRIVERS) + "\n"]
    for op, prefix, flags in TABLES:
        for flag in flags:
            marks = ["✓" if cap.flags.get(op, 0) & flag else "" for cap in caps]
            out.append(f"| `{prefix}{flag.name}` | " + " | ".join(marks) + " |\n")
    for label, method in VERBS:
        marks = ["✓" if any(hasattr(cls, method) for cls in found) else "" for found in classes]
        out.append(f"| {label} | " + " | ".join(marks) + " |\n")
    return "".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "<!-- virtsnap:cli-reference" in markdown:
        return reference.markdown()
    return markdown.replace("<!-- virtsnap:driver-flags -->", driver_flags())

#!/usr/bin/env python3
"""Write virtsnap(1) from the CLI's command tables into share/man/man1/virtsnap.1 (committed, shipped in the wheel).

tests/unit/test_cli_reference.py fails when the committed page differs from what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from virtsnap.cli.reference import roff  # noqa: E402 - after the path set-up

MAN_PAGE = ROOT / "share" / "man" / "man1" / "virtsnap.1"

if __name__ == "__main__":
    MAN_PAGE.write_text(roff())
    print(f"wrote {MAN_PAGE.relative_to(ROOT)}")

"""Makes the fake VirtualBox fixtures of vboxfake.py available to the tests of this directory."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vboxfake import fake_pycache, fake_vbox  # noqa: F401 - fixtures

"""Every planted bug of tests/mutants/mutants.py is caught by the tests named for it (each runs in a temporary
copy of the repository; the working tree is never changed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("virtsnap_mutants", Path(__file__).with_name("mutants.py"))
assert _spec is not None and _spec.loader is not None
mutants = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mutants  # dataclasses look their module up while the class is made
_spec.loader.exec_module(mutants)


@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=[m.id for m in mutants.MUTANTS])
def test_planted_bug_is_caught(mutant):
    killed, failed, seconds, output = mutants.run(mutant)
    assert killed, f"mutant {mutant.id} ({mutant.bug}) survived {mutant.tests} in {seconds:.0f}s:\n{output}"

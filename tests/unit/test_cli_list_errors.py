"""`list` skips a domain that went away between the listing and its state (virsh does), but never hides a
domain whose state cannot be read for another reason: that fails the command with the error."""

from __future__ import annotations

import pytest

import virtsnap
from virtsnap.cli import main as cli_main
from virtsnap.errors import ErrorCode, ErrorDomain, error


@pytest.mark.parametrize("options", ["--all", "--all --json"])
def test_unreadable_state_fails_the_listing(monkeypatch, capsys, options):
    def broken(self, flags=0):
        raise error(ErrorCode.INTERNAL_ERROR, ErrorDomain.QEMU, "ModuleNotFoundError: No module named 'qemu'")

    monkeypatch.setattr(virtsnap.virDomain, "state", broken)
    assert cli_main.main(["-c", "test:///default", f"list {options}"]) == 1
    out, err = capsys.readouterr()
    assert "No module named 'qemu'" in err
    assert "test" not in out.splitlines()[-1:]  # no table that looks complete without it


@pytest.mark.parametrize("options", ["--all", "--all --json"])
def test_vanished_domain_is_skipped(monkeypatch, capsys, options):
    def gone(self, flags=0):
        raise error(ErrorCode.NO_DOMAIN, ErrorDomain.DOMAIN, "domain not found")

    monkeypatch.setattr(virtsnap.virDomain, "state", gone)
    assert cli_main.main(["-c", "test:///default", f"list {options}"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and " test " not in out

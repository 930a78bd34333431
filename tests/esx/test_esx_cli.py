"""The virsh-style CLI on esx:// against vcsim: a short session, the password from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pyVmomi  # noqa: F401  (the esx extra: a missing pyVmomi is an error, not a skip)

import virtsnap.cli.main  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest_vcsim import make_vcsim_fixture
from esxutil import VM0, uri

vcsim = make_vcsim_fixture(scope="module")


def virsh(srv: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VIRTSNAP_ESX_PASSWORD=srv.password, XDG_CONFIG_HOME="/nonexistent")
    for var in ("VIRTSNAP_AUTH_CONFIG", "LIBVIRT_AUTH_FILE"):
        env.pop(var, None)
    # No terminal (new session, stdin from /dev/null): nothing may prompt, the environment must be used.
    return subprocess.run([sys.executable, "-m", "virtsnap", "-c", uri(srv), *args], env=env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, start_new_session=True, timeout=120)


def test_cli_session(vcsim: Any) -> None:
    out = virsh(vcsim, f"snapshot-create-as {VM0} a --description first; snapshot-create-as {VM0} b; "
                       f"snapshot-revert {VM0} a --paused; domstate {VM0}; snapshot-current {VM0} --name; "
                       f"snapshot-create-as {VM0} c; snapshot-list {VM0} --tree; "
                       f"snapshot-delete {VM0} a --children-only; snapshot-list {VM0} --name")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # (The CLI's own prompting callback may print its prompt first: it declines without a terminal.)
    assert "Domain snapshot a created" in out.stdout and "paused" in lines
    tree = out.stdout.split("snapshot a reverted")[-1]
    assert "+- b" in tree and "+- c" in tree
    assert [line for line in lines if line][-1].endswith("a")  # only a is left


def test_cli_bad_password(vcsim: Any) -> None:
    env_bad = dict(vcsim.__dict__, password="not-it")
    out = virsh(type(vcsim)(**env_bad), "list")
    assert out.returncode != 0
    assert "authentication failed" in out.stderr and "not-it" not in out.stderr

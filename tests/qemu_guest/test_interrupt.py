"""Ctrl-C during a memory snapshot from the CLI: the command fails cleanly, nothing is kept, the guest
keeps running as before. The interrupt is delivered at a named failpoint, so the test has no timing race."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import agent_for, domain_xml, guest_read, image_tags

pytestmark = pytest.mark.qemu


def virtsnap_cli() -> str:
    return str(Path(sys.executable).with_name("virtsnap"))


@pytest.mark.parametrize("point", ["create.save-started", "create.data-done"])
def test_interrupted_snapshot_keeps_nothing_and_guest_runs(guest, workdir, conn, point):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    with agent_for(conn, dom) as agent:
        agent.shell("echo alive > /ram/value")
    env = {**os.environ, "VIRTSNAP_FAILPOINTS": f"{point}=sigint"}
    proc = subprocess.run([virtsnap_cli(), "-c", "qemu:///session", "snapshot-create-as", "demo", "s1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: operation aborted: snapshot 's1' cancelled; nothing was kept and the domain is as before")
    assert "Traceback" not in proc.stderr
    assert dom.snapshotNum() == 0
    assert image_tags(str(workdir / "demo.qcow2")) == []
    assert dom.state()[0] == 1
    assert guest_read(conn, dom, "cat /ram/value").strip() == "alive"

"""The README's playbook, as written there, with ansible-playbook against three sshd hosts (each with its own QEMU
state, two shut-off domains in real qcow2 images): every VM snapshotted before the upgrade; where the upgrade
fails (it wrote into a VM's disk first) every VM of that host is reverted and the host fails; elsewhere the
upgrade stays."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

import virtsnap

from .conftest import ROOT, Host, play_json, write_inventory
from .test_ansible_info_prune import _define

PATTERN = 85  # the byte the "upgrade" writes at the start of d1's disk


def _readme_playbook() -> str:
    (block,) = re.findall(r"^```yaml\n(.*?)^```\n", (ROOT / "README.md").read_text(), re.M | re.S)
    return block


def _disk_holds(disk: Path, byte: int) -> bool:
    done = subprocess.run(["qemu-io", "-f", "qcow2", "-r", "-U", "-c", f"read -P {byte} 0 64k", str(disk)],
                          capture_output=True, text=True, check=True)
    return "Pattern verification failed" not in done.stdout + done.stderr


def test_readme_playbook_snapshots_then_reverts_where_the_upgrade_fails(hosts: list[Host], tmp_path: Path) -> None:
    mp = pytest.MonkeyPatch()
    inventory = write_inventory(tmp_path / "hosts.ini", hosts, group="hypervisors")
    (tmp_path / "host_vars").mkdir()
    for host in hosts:
        mp.setenv("VIRTSNAP_QEMU_STATE_DIR", str(host.state))
        conn = virtsnap.open("qemu:///session")
        for name in ("d1", "d2"):
            _define(conn, host.state.parent, name)
        conn.close()
        disk = host.state.parent / "d1.qcow2"
        upgrade = f"qemu-io -f qcow2 -c 'write -P {PATTERN} 0 64k' {shlex.quote(str(disk))}"
        if host.name == "gamma":
            upgrade += " && exit 1"  # the upgrade breaks half way on this host
        (tmp_path / "host_vars" / f"{host.name}.yml").write_text(json.dumps(
            {"virtsnap_uri": "qemu:///session", "upgrade_command": f"sh -c {shlex.quote(upgrade)}"}))
    mp.undo()

    run = play_json(tmp_path, inventory, _readme_playbook())
    assert {h: (s["failures"], s["rescued"]) for h, s in run["stats"].items()} == {
        "alpha": (0, 0), "beta": (0, 0), "gamma": (1, 1)}
    for host in hosts:
        mp.setenv("VIRTSNAP_QEMU_STATE_DIR", str(host.state))
        conn = virtsnap.open("qemu:///session")
        for dom in conn.listAllDomains():
            assert dom.snapshotListNames() == ["pre-upgrade"]
            assert dom.snapshotCurrent().getName() == "pre-upgrade"
        conn.close()
        reverted = host.name == "gamma"
        assert _disk_holds(host.state.parent / "d1.qcow2", 0 if reverted else PATTERN)
    mp.undo()

"""ansible-playbook (ansible-core) with the virtsnap.virtsnap collection against three sshd hosts, each with
its own QEMU state: two domains snapshotted per host, a second run changes nothing, check mode changes
nothing, a host that fails leaves the others done."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import virtsnap

from .conftest import ANSIBLE_PLAYBOOK, ROOT, Host, ansible_env, write_inventory

PLAYBOOK = """
- hosts: hv
  gather_facts: false
  tasks:
    - name: snapshot every VM before the upgrade
      virtsnap.virtsnap.snapshot:
        uri: "qemu:///session"
        domain: "{{ item }}"
        name: pre-upgrade
        description: before the patch window
        state: "{{ wanted | default('present') }}"
      loop: [d1, d2]
"""


def _domain(workdir: Path, name: str) -> str:
    disk = workdir / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    return (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm"
            f"</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>")


def _open(host: Host, monkeypatch: pytest.MonkeyPatch) -> virtsnap.virConnect:
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(host.state))
    return virtsnap.open("qemu:///session")


def _names(host: Host, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    conn = _open(host, monkeypatch)
    try:
        return {d.name(): d.snapshotListNames() for d in conn.listAllDomains()}
    finally:
        conn.close()


def _play(tmp_path: Path, inventory: Path, *extra: str) -> dict[str, dict[str, int]]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook), *extra], capture_output=True,
                          text=True, env=ansible_env(tmp_path), timeout=300, stdin=subprocess.DEVNULL)
    recap = {m[0]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m[1])}
             for m in re.findall(r"^(\w+)\s+:\s+(ok=.*)$", done.stdout, re.M)}
    assert recap, done.stdout + done.stderr
    return recap


def test_playbook_snapshots_idempotent_check_mode_and_failures(hosts, tmp_path, monkeypatch) -> None:
    for host in hosts:
        conn = _open(host, monkeypatch)
        for name in ("d1", "d2") if host.name != "gamma" else ("d1",):  # gamma lacks d2: its task fails
            conn.defineXML(_domain(host.state.parent, name))
        conn.close()
    inventory = write_inventory(tmp_path / "hosts.ini", hosts)

    first = _play(tmp_path, inventory)
    assert first["alpha"]["changed"] == first["beta"]["changed"] == 1
    assert first["alpha"]["failed"] == first["beta"]["failed"] == 0
    assert first["gamma"]["failed"] == 1
    for host in hosts:
        expected = {"d1": ["pre-upgrade"], "d2": ["pre-upgrade"]} if host.name != "gamma" else {"d1": ["pre-upgrade"]}
        assert _names(host, monkeypatch) == expected

    again = _play(tmp_path, inventory, "--limit", "alpha,beta")
    assert {h: (r["changed"], r["failed"]) for h, r in again.items()} == {"alpha": (0, 0), "beta": (0, 0)}

    check = _play(tmp_path, inventory, "--limit", "alpha,beta", "--check", "-e", "wanted=absent")
    assert {h: (r["changed"], r["failed"]) for h, r in check.items()} == {"alpha": (1, 0), "beta": (1, 0)}
    assert _names(hosts[0], monkeypatch) == {"d1": ["pre-upgrade"], "d2": ["pre-upgrade"]}

    gone = _play(tmp_path, inventory, "--limit", "alpha", "-e", "wanted=absent")
    assert (gone["alpha"]["changed"], gone["alpha"]["failed"]) == (1, 0)
    assert _names(hosts[0], monkeypatch) == {"d1": [], "d2": []}


def test_collection_builds(tmp_path: Path) -> None:
    done = subprocess.run([str(Path(sys.executable).with_name("ansible-galaxy")), "collection", "build",
                           str(ROOT / "ansible_collections" / "virtsnap" / "virtsnap"), "--output-path", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "virtsnap-virtsnap-0.1.0.tar.gz").exists()

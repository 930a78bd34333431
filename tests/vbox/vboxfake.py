"""Helpers and fixtures for the vbox driver's tests: a fake VBoxManage (fake_vboxmanage.py) over a JSON state.

`fake_vbox` installs it through $VIRTSNAP_VBOXMANAGE with three machines and one inaccessible entry.
(A module with its own name, so that it never clashes with another directory's conftest.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FAKE = Path(__file__).resolve().parent / "fake_vboxmanage.py"

ALPHA = "0b6e2c1a-1111-4a5b-8c9d-000000000001"
BETA = "0b6e2c1a-2222-4a5b-8c9d-000000000002"
GAMMA = "0b6e2c1a-3333-4a5b-8c9d-000000000003"
LOST = "0b6e2c1a-4444-4a5b-8c9d-000000000004"
BETA_NAME = 'béta "ünï" \\ vm'
BETA_DESCRIPTION = 'first line\nsecond "quoted" \\ line\n-x="y"'


def _machines(root: Path) -> list[dict[str, Any]]:
    def vm(uuid: str, name: str, **extra: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "uuid": uuid, "name": name, "ostype": "Ubuntu (64-bit)", "ostype_id": "Ubuntu_64", "memory": 1024,
            "cpus": 2, "state": "poweroff", "state_change": 1714557600, "description": "",
            "dir": str(root / "VirtualBox VMs" / name.replace("/", "_")), "snapshots": {}, "first": None,
            "current": None, "state_file": None,
            "controllers": [{"name": "SATA", "type": "IntelAhci", "ports": 1, "attachments": [
                {"port": 0, "device": 0, "type": "hdd", "path": str(root / f"{uuid}.vdi"), "uuid": uuid}]}],
        }
        base.update(extra)
        return base

    alpha = vm(ALPHA, "alpha")
    alpha["controllers"].append({"name": "IDE", "type": "PIIX4", "ports": 2, "attachments": [
        {"port": 1, "device": 0, "type": "dvd", "path": "/srv/iso/debian-12.iso", "uuid": GAMMA},
        {"port": 1, "device": 1, "type": "dvd", "path": None}]})
    return [
        alpha,
        vm(BETA, BETA_NAME, state="running", memory=2048, cpus=4, description=BETA_DESCRIPTION,
           cpuid_override=True),
        vm(GAMMA, "gamma", state="aborted", ostype="Other/Unknown", ostype_id="Other"),
        vm(LOST, "lost", inaccessible=True),
    ]


@dataclass
class FakeVBox:
    """Handle on the fake VirtualBox: its state, its call log, and direct VBoxManage calls."""

    root: Path
    exe: Path
    state_path: Path
    log_path: Path

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]

    def update(self, change: Callable[[dict[str, Any]], None]) -> None:
        state = self.state()
        change(state)
        self.state_path.write_text(json.dumps(state, indent=1), encoding="utf-8")

    def vm(self, uuid: str) -> dict[str, Any]:
        return next(vm for vm in self.state()["vms"] if vm["uuid"] == uuid)

    def set_vm(self, uuid: str, **fields: Any) -> None:
        def change(state: dict[str, Any]) -> None:
            next(vm for vm in state["vms"] if vm["uuid"] == uuid).update(fields)

        self.update(change)

    def calls(self) -> list[list[str]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log_path.read_text(encoding="utf-8").splitlines()]

    def log_entries(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text(encoding="utf-8").splitlines()]

    def clear_log(self) -> None:
        self.log_path.unlink(missing_ok=True)

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        """Call the fake directly (as a user would behind virtsnap's back), unlogged."""
        full = {**os.environ, "LC_ALL": "C.UTF-8", **(env or {})}
        full.pop("VBOX_FAKE_LOG", None)
        return subprocess.run([str(self.exe), *args], env=full, capture_output=True, check=False)


@pytest.fixture(scope="session")
def fake_pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fake-vboxmanage-pycache")


def install_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_pycache: Path) -> FakeVBox:
    """A fake VirtualBox under `tmp_path`, made the one virtsnap runs (through `monkeypatch`)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "VBoxManage"
    # A wrapper with this interpreter, so the fake needs nothing on PATH. It imports the fake with its
    # bytecode cached outside the source tree (even under PYTHONDONTWRITEBYTECODE): a test run makes
    # hundreds of calls, and compiling the fake each time would triple their cost.
    exe.write_text(f"#!{sys.executable} -S\nimport sys\nsys.dont_write_bytecode = False\n"
                   f"sys.pycache_prefix = {str(fake_pycache)!r}\nsys.path.insert(0, {str(FAKE.parent)!r})\n"
                   "import fake_vboxmanage\nsys.exit(fake_vboxmanage.main(sys.argv[1:]))\n")
    exe.chmod(0o755)
    state_path = tmp_path / "vbox-state.json"
    state_path.write_text(json.dumps({"version": "7.0.14r161095", "vms": _machines(tmp_path)}, indent=1),
                          encoding="utf-8")
    fake = FakeVBox(tmp_path, exe, state_path, tmp_path / "vbox-calls.jsonl")
    monkeypatch.setenv("VIRTSNAP_VBOXMANAGE", str(exe))
    monkeypatch.setenv("VBOX_FAKE_STATE", str(state_path))
    monkeypatch.setenv("VBOX_FAKE_LOG", str(fake.log_path))
    monkeypatch.delenv("VBOX_FAKE_TRANSLATE", raising=False)
    return fake


@pytest.fixture
def fake_vbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_pycache: Path) -> FakeVBox:
    return install_fake(tmp_path, monkeypatch, fake_pycache)

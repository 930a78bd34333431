"""The README's examples run as written: the Python block against test:///default, the `sh` blocks through
the installed `virtsnap` command (the qemu tour on a real qcow2 image and a QEMU process, with its paths moved
into a private directory), each compared with the output block that follows it, if any. `console` blocks need
what a test machine has not (make's apt-get, an ESX host, VirtualBox) and are shown, not run. The `yaml` block
(the Ansible playbook) runs with ansible-playbook against three sshd hosts in tests/remote/test_readme_playbook.py."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer((ROOT / "README.md").read_text())]


def _expected_after(index: int) -> str | None:
    blocks = _blocks()
    if index + 1 < len(blocks) and blocks[index + 1][0] == "text":
        return blocks[index + 1][1]
    return None


def _normal(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def test_readme_has_the_tour() -> None:
    kinds = [kind for kind, _ in _blocks()]
    assert kinds.count("python") == 1 and kinds.count("sh") == 2 and kinds.count("xml") == 1
    assert kinds.count("yaml") == 1
    assert set(kinds) <= {"python", "sh", "xml", "text", "console", "yaml"}


def test_python_block_runs_against_the_test_driver() -> None:
    index, code = next((i, b) for i, (k, b) in enumerate(_blocks()) if k == "python")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _normal(proc.stdout) == _normal(_expected_after(index) or "")


def _run_line(line: str, cwd: Path, env: dict[str, str]) -> str:
    argv = shlex.split(line)
    assert argv[0] in ("virtsnap", "qemu-img"), line  # the README's shell blocks use only these
    if argv[0] == "virtsnap":
        argv[0] = str(BIN / "virtsnap")
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, check=False)
    assert proc.returncode == 0, f"{line}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vs-", dir="/tmp"))  # unix socket paths must stay under 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_shell_blocks_run_through_the_cli(short_tmp: Path) -> None:
    tmp_path = short_tmp
    env = dict(os.environ, VIRTSNAP_QEMU_STATE_DIR=str(tmp_path / "state"))
    blocks = _blocks()
    xml = next(b for k, b in blocks if k == "xml")
    private = str(tmp_path) + "/"
    (tmp_path / "vm.xml").write_text(xml.replace("/tmp/", private))
    ran = 0
    try:
        for index, (kind, body) in enumerate(blocks):
            if kind != "sh":
                continue
            out = "".join(_run_line(line.replace("/tmp/", private), tmp_path, env)
                          for line in body.splitlines() if line.strip())
            expected = _expected_after(index)
            if expected is not None:
                assert _normal(out) == _normal(expected)
            ran += 1
        # the qemu tour ends with the domain reverted to its shut-off snapshot, both snapshots in the image
        state = _run_line("virtsnap -c qemu:///session domstate vm", tmp_path, env)
        assert state.strip() == "shut off"
        tags = _run_line(f"qemu-img snapshot -U -l {private}vm.qcow2", tmp_path, env)
        assert {"clean", "running"} <= set(tags.split())
    finally:
        subprocess.run([BIN / "virtsnap", "-c", "qemu:///session", "destroy", "vm"], env=env, capture_output=True,
                       check=False)
    assert ran == 2

"""Three "hosts" for the `+ssh` driver: real OpenSSH servers (Debian's sshd) on loopback ports, each with its
own host key, the test's authorized key and its own virtsnap state directory; all stopped at the end."""

from __future__ import annotations

import gc
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

SSHD = "/usr/sbin/sshd"
VIRTSNAP = str(Path(sys.executable).with_name("virtsnap"))
ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


class Host:
    """One sshd and what a URI needs to reach it."""

    def __init__(self, name: str, port: int, state: Path, client_key: Path, known_hosts: Path,
                 proc: subprocess.Popen[bytes]) -> None:
        self.name, self.port, self.state = name, port, state
        self.client_key, self.known_hosts, self.proc = client_key, known_hosts, proc

    def uri(self, scheme: str, path: str = "/default", **params: str) -> str:
        query = {"keyfile": str(self.client_key), "known_hosts": str(self.known_hosts), "command": VIRTSNAP,
                 **params}
        text = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
        return f"{scheme}+ssh://{getpass.getuser()}@127.0.0.1:{self.port}{path}?{text}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)


def start_host(base: Path, name: str, client_key: Path, extra_env: dict[str, str] | None = None,
               state: Path | None = None) -> Host:
    """An sshd whose sessions run with VIRTSNAP_QEMU_STATE_DIR=`state` (a fresh directory unless given)."""
    d = base / name
    d.mkdir(mode=0o700)
    if state is None:
        state = d / "state"
        state.mkdir()
    _keygen(d / "host_key")
    authorized = d / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    env = {"VIRTSNAP_QEMU_STATE_DIR": str(state), "PATH": "/usr/bin:/bin", **(extra_env or {})}
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    for _attempt in range(5):  # the free port may be taken between the probe and sshd's bind: try another
        port = _free_port()
        config = d / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}",
            f"AuthorizedKeysFile {authorized}", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "PermitRootLogin prohibit-password", f"PidFile {d / 'sshd.pid'}",
            "SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()), "LogLevel INFO", ""]))
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        log = []
        for raw in proc.stderr:  # sshd says when it listens; reading its log is the readiness signal
            line = raw.decode(errors="replace")
            log.append(line)
            if "Server listening on" in line:
                break
        else:
            proc.wait()
            if any("Address already in use" in line for line in log):
                continue
            raise AssertionError("sshd did not start:\n" + "".join(log))
        known = d / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} " + (d / "host_key.pub").read_text())
        # keep draining sshd's log so it never blocks on a full pipe
        drain = threading.Thread(target=_copy, args=(proc.stderr, d / "sshd.log"), daemon=True)
        drain.start()
        host = Host(name, port, state, client_key, known, proc)
        host.drain = drain  # type: ignore[attr-defined]
        return host
    raise AssertionError("no free port for sshd")


def _copy(source: IO[bytes], path: Path) -> None:
    with path.open("ab") as log:
        for line in source:
            log.write(line)


def stop_host(host: Host) -> None:
    host.proc.terminate()
    host.proc.wait()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Host]]:
    assert shutil.which("ssh") and os.path.exists(SSHD), "scripts/setup.sh installs openssh-client/server"
    base = tmp_path_factory.mktemp("ssh")
    client_key = base / "client_key"
    _keygen(client_key)
    started: list[Host] = []
    try:
        for name in ("alpha", "beta", "gamma"):
            started.append(start_host(base, name, client_key))
        yield started
    finally:
        gc.collect()  # connections whose last handle is gone hang up now, ending their sessions
        for host in started:
            stop_host(host)


def write_inventory(path: Path, hosts: list[Host], group: str = "hv") -> Path:
    """An Ansible inventory of the sshd hosts (this interpreter, with virtsnap, runs the modules there)."""
    path.write_text(f"[{group}]\n" + "".join(
        f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port} ansible_user={getpass.getuser()} "
        f"ansible_ssh_private_key_file={h.client_key} "
        f"ansible_ssh_common_args='-o UserKnownHostsFile={h.known_hosts} -o BatchMode=yes' "
        f"ansible_python_interpreter={sys.executable}\n" for h in hosts))
    return path


def ansible_env(tmp: Path, **extra: str) -> dict[str, str]:
    """ansible-playbook's environment: the repository's collection, private temporary directories."""
    return {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT), "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
            "ANSIBLE_LOCAL_TEMP": str(tmp / "atmp"), "ANSIBLE_REMOTE_TEMP": str(tmp / "rtmp"),
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORKS": "3", **extra}


def play_json(tmp: Path, inventory: Path, playbook: str, *extra: str) -> dict[str, Any]:
    """Run `playbook` with the results_json callback (callback_plugins/):
    {"plays": [{"tasks": [{"hosts": {HOST: result}}]}], "stats": {HOST: {"changed": N, "failures": N, ...}}}."""
    path = tmp / "play.yml"
    path.write_text(playbook)
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(path), *extra], capture_output=True,
                          text=True, env=ansible_env(tmp, ANSIBLE_STDOUT_CALLBACK="results_json",
                                             ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).with_name("callback_plugins"))),
                          timeout=300, stdin=subprocess.DEVNULL)
    try:
        return dict(json.loads(done.stdout))
    except ValueError:
        raise AssertionError(done.stdout + done.stderr) from None


def task_results(run: dict[str, Any], host: str) -> list[dict[str, Any]]:
    """One host's result of every task, in order."""
    return [task["hosts"][host] for play in run["plays"] for task in play["tasks"] if host in task["hosts"]]

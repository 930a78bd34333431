"""Three "hosts" for the `+ssh` driver: real OpenSSH servers (Debian's sshd) on loopback ports, each with its
own host key, the test's authorized key and its own virtsnap state directory; all stopped at the end."""

from __future__ import annotations

import gc
import getpass
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

SSHD = "/usr/sbin/sshd"
VIRTSNAP = str(Path(sys.executable).with_name("virtsnap"))


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

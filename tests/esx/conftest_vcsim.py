"""Run a fresh govmomi vcsim (ESX model) for a test, and always stop it.

A plain module, not a conftest.py, so any conftest or test module can use it:

    from conftest_vcsim import vcsim_server, make_vcsim_fixture

    vcsim = make_vcsim_fixture()              # module-scoped pytest fixture

    def test_x(vcsim):
        si = SmartConnect(**vcsim.connect_kwargs())

or, without pytest:

    with vcsim_server() as srv:
        print(srv.url, srv.user, srv.password, srv.cert)

The binary comes from tests/esx/vcsim/build.py (built once, then cached), or
from $VIRTSNAP_VCSIM if that names an already built binary.  Each server gets
its own temporary directory holding its certificate, its log and the
simulated datastores ($TMPDIR of the child), removed on exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import json
import os
import selectors
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

VCSIM_DIR = Path(__file__).resolve().parent / "vcsim"
READY_PREFIX = "VCSIM_READY "
USER = "user"
PASSWORD = "pass"


@dataclasses.dataclass(frozen=True)
class VcsimServer:
    host: str
    port: int
    user: str
    password: str
    url: str  # https://127.0.0.1:PORT/sdk
    cert: str  # PEM of the server certificate (self-signed, IP SAN 127.0.0.1)
    pid: int
    log: str  # vcsim's stderr, handy when a test fails

    def connect_kwargs(self, verify: bool = False) -> dict:
        """Keyword arguments for pyVim.connect.SmartConnect.

        verify=False skips certificate checks (what most tests want);
        verify=True trusts exactly this server's certificate.
        """
        kwargs = dict(host=self.host, port=self.port, user=self.user, pwd=self.password)
        if verify:
            kwargs["sslContext"] = ssl.create_default_context(cafile=self.cert)
        else:
            kwargs["disableSslCertValidation"] = True
        return kwargs


@functools.cache
def vcsim_binary() -> Path:
    """Path of the patched vcsim, building it on first use in this process."""
    override = os.environ.get("VIRTSNAP_VCSIM")
    if override:
        return Path(override)
    # build.py lives next to main.go, outside any package: load it by path.
    spec = importlib.util.spec_from_file_location("virtsnap_vcsim_build", VCSIM_DIR / "build.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build.ensure_vcsim()


def _read_ready_line(proc: subprocess.Popen, deadline: float) -> dict:
    """Wait (until deadline) for vcsim's VCSIM_READY line on stdout."""
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("vcsim printed no VCSIM_READY line in time")
            if not sel.select(timeout=remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:  # EOF: the process died before becoming ready
                raise RuntimeError(f"vcsim exited early (rc={proc.wait()})")
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(READY_PREFIX):
                    return json.loads(text[len(READY_PREFIX):])


def _drain(stream) -> None:
    # Keep reading stdout after the ready line so the child can never block
    # on a full pipe.
    for _ in iter(lambda: stream.read(4096), b""):
        pass


def _wait_answering(url: str, proc: subprocess.Popen, deadline: float) -> None:
    """Poll vcsim's /about endpoint until it answers over TLS."""
    about = url.rsplit("/sdk", 1)[0] + "/about"
    ctx = ssl._create_unverified_context()  # liveness only; tests check TLS themselves
    delay = 0.01
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"vcsim exited early (rc={proc.returncode})")
        try:
            with urllib.request.urlopen(about, context=ctx, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() + delay > deadline:
            raise TimeoutError(f"vcsim at {url} did not answer in time")
        time.sleep(delay)  # short back-off between polls, bounded by the deadline
        delay = min(delay * 2, 0.2)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (vcsim then removes its model), SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def vcsim_server(
    *, startup_timeout: float = 30.0, builtin_cert: bool = False, binary: Path | None = None,
    model: str = "esx",
) -> Iterator[VcsimServer]:
    """Start a fresh vcsim on 127.0.0.1 (kernel-chosen free port); yield its details.

    builtin_cert=True serves govmomi's stock RSA-1024 test certificate instead
    of a fresh ECDSA one (OpenSSL 3 rejects the former even when trusted).
    model="vpx" simulates a vCenter (datacenter DC0, cluster DC0_C0, hosts
    DC0_C0_H0..2 and standalone DC0_H0) instead of one ESX host.
    """
    binary = Path(binary) if binary else vcsim_binary()
    workdir = Path(tempfile.mkdtemp(prefix="virtsnap-vcsim-"))
    cert = workdir / "server.pem"
    log_path = workdir / "vcsim.log"
    argv = [str(binary), "-host", "127.0.0.1", "-port", "0",
            "-username", USER, "-password", PASSWORD, "-cert-out", str(cert),
            # If the test runner is SIGKILLed, the finally below never runs.
            "-watch-parent"]
    if builtin_cert:
        argv.append("-builtin-cert")
    if model != "esx":
        argv += ["-model", model]
    # TMPDIR confines the simulated datastores to workdir, so they are removed
    # with it even if vcsim has to be SIGKILLed.
    env = dict(os.environ, TMPDIR=str(workdir))
    proc = None
    drain = None
    try:
        with open(log_path, "wb") as log_fh:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log_fh,
                                    stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + startup_timeout
        try:
            info = _read_ready_line(proc, deadline)
            drain = threading.Thread(target=_drain, args=(proc.stdout,), daemon=True)
            drain.start()
            _wait_answering(info["url"], proc, deadline)
        except Exception as exc:
            log_tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"vcsim failed to start: {exc}\n--- vcsim log ---\n{log_tail}") from exc
        yield VcsimServer(
            host=info["host"], port=int(info["port"]), user=USER, password=PASSWORD,
            url=info["url"], cert=str(cert), pid=proc.pid, log=str(log_path),
        )
    finally:
        if proc is not None:
            _stop(proc)
            if drain is not None:
                drain.join(timeout=2)  # EOF follows the exit; then the pipe is idle
            proc.stdout.close()
        # Keep the log only while debugging: VIRTSNAP_KEEP_VCSIM=1.
        if not os.environ.get("VIRTSNAP_KEEP_VCSIM"):
            shutil.rmtree(workdir, ignore_errors=True)


def make_vcsim_fixture(scope: str = "module", name: str = "vcsim", **server_kwargs):
    """Return a pytest fixture (default: module-scoped, named `vcsim`)."""
    import pytest  # imported here so the module works without pytest too

    @pytest.fixture(scope=scope, name=name)
    def _vcsim_fixture():
        with vcsim_server(**server_kwargs) as srv:
            yield srv

    return _vcsim_fixture

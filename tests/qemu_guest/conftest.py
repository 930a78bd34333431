"""Fixtures for tests on real QEMU guests (TCG): the cached tiny guest, a private driver state dir,
domains that are always destroyed when the test ends, and guest-agent access for marker files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu.agent import Agent

HERE = Path(__file__).resolve().parent
BUILDER = HERE.parent / "guest" / "build_guest.py"


def _load_builder():
    sys.path.insert(0, str(BUILDER.parent))  # the builder is a standalone stdlib script
    import build_guest

    return build_guest


@pytest.fixture(scope="session")
def guest():
    if shutil.which("qemu-system-x86_64") is None and os.environ.get("CI"):
        pytest.fail("qemu-system-x86_64 is missing: CI must install qemu-system-x86")
    return _load_builder().build()


@pytest.fixture
def workdir():
    # Short paths: unix socket paths must stay under 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="vs-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def conn(workdir, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(workdir / "state"))
    c = virtsnap.open("qemu:///session")
    yield c
    for dom in c.listAllDomains():  # every test kills its QEMU, even when it failed
        if dom.isActive():
            dom.destroy()
    c.close()


def domain_xml(guest, workdir: Path, name: str = "demo", fmt: str = "qcow2", memory_mib: int = 256,
               agent: bool = True) -> str:
    disk = workdir / f"{name}.{fmt}"
    if not disk.exists():
        subprocess.run(["qemu-img", "convert", "-O", fmt, guest.data_template, str(disk)], check=True)
    channel = ("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
               if agent else "")
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{guest.kernel}</kernel>
    <initrd>{guest.initrd}</initrd>
    <cmdline>{guest.cmdline}</cmdline>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='{fmt}'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    {channel}
    <serial type='file'><source path='{workdir / (name + ".serial")}'/></serial>
  </devices>
</domain>"""


def agent_for(conn, dom, timeout: float = 60.0) -> Agent:
    """A synchronised agent connection (waits for the guest to boot)."""
    path = Path(conn.driver.runtime) / dom.UUIDString() / "agent.sock"
    agent = Agent(str(path))
    agent.connect(time.monotonic() + timeout)
    return agent


def guest_read(conn, dom, script: str) -> str:
    with agent_for(conn, dom) as agent:
        return agent.shell(script)


def held_files(pid: int) -> list[str]:
    """What a running process's descriptors point to. A descriptor it closes while they are read (a monitor
    connection just hung up) is left out rather than failing the read."""
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            held.append(os.readlink(fd))
        except FileNotFoundError:
            continue
    return held


def image_tags(path: str) -> list[str]:
    out = subprocess.run(["qemu-img", "snapshot", "-U", "-l", path], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()[2:]  # "Snapshot list:" and the header
    return [line.split()[1] for line in lines if line.strip()]


def _libvirtd_ready() -> bool:
    return subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0


def _without_kvm(argv: list[str], where: Path) -> list[str]:
    """argv run in a private mount namespace where /dev/kvm is an empty root-only file and qemu.conf is
    this run's own (`namespaces = []`: libvirt cannot carry a file bind mount into a guest's private /dev).

    Why: libvirtd 9.0 probes QEMU as root with accel=kvm:tcg (KVM comes up) but judges /dev/kvm (0600 root)
    unusable for its QEMU user, so virQEMUCapsIsValid finds "KVM was enabled when probing, but it is not
    available now" on every lookup and re-probes QEMU on every define (tens of seconds each). Without a usable
    /dev/kvm both views agree (TCG only, which is all these tests run) and the capabilities cache holds. Only
    this daemon's view changes: the host's /dev/kvm and /etc/libvirt are untouched."""
    if not Path("/dev/kvm").exists():
        return argv
    blank, conf = where / "no-kvm", where / "qemu.conf"
    blank.touch(mode=0o600)
    conf.write_text("namespaces = []\n")
    script = 'mount --bind "$0" /dev/kvm && mount --bind "$1" /etc/libvirt/qemu.conf && shift && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, str(blank), str(conf),
            *argv]


@pytest.fixture(scope="session")
def libvirtd(tmp_path_factory):
    """Root libvirtd 9.0 (qemu:///system, TCG), started once for the run when none is running (its first
    start probes QEMU's capabilities, which takes seconds on a loaded machine). A daemon started here sees no
    usable /dev/kvm (see _without_kvm); one already running is used as it is."""
    if os.geteuid() != 0 or shutil.which("libvirtd") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run as root with Debian's libvirt-daemon-system installed")
        pytest.skip("needs root and libvirtd")
    started = []
    if not _libvirtd_ready():
        where = tmp_path_factory.mktemp("libvirtd")
        for argv in (["virtlogd"], _without_kvm(["libvirtd"], where)):  # the qemu driver logs through virtlogd
            started.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 180
        while not _libvirtd_ready():
            assert time.monotonic() < deadline, "libvirtd did not start"
            time.sleep(0.1)
    yield
    for proc in reversed(started):
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def host_bridge():
    """A Linux bridge made for this run (`ip link add ... type bridge`), deleted at its end."""
    if os.geteuid() != 0 and os.environ.get("CI"):
        pytest.fail("CI must run as root")
    name = f"vsbr{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-q", "-c", "qemu:///system", *args], capture_output=True, text=True,
                          check=True, timeout=120)


@pytest.fixture(scope="session")
def libvirt_network(libvirtd, host_bridge, tmp_path_factory):
    """A libvirt network, active in the test libvirtd, whose guests attach to host_bridge (forward
    mode='bridge': libvirt runs no dnsmasq for it); its name. Undefined at the end of the run."""
    name = f"vs-net-{os.getpid()}"
    xml = tmp_path_factory.mktemp("network") / "net.xml"
    xml.write_text(f"<network><name>{name}</name><forward mode='bridge'/><bridge name='{host_bridge}'/></network>")
    virsh("net-define", str(xml))
    try:
        virsh("net-start", name)
        yield name
    finally:
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "net-destroy", name], capture_output=True)
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "net-undefine", name], capture_output=True)


# What the newer libvirtd replaces in its own mount namespace (tests/libvirt_bpo.py's unpacked tree over the system's
# files) and the directories it gets empty, so that it shares nothing with the libvirtd 9.0 other tests run.
_NEWER_BINDS = ("/usr/sbin/libvirtd", "/usr/lib/x86_64-linux-gnu/libvirt", "/usr/lib/libvirt", "/usr/share/libvirt")
_NEWER_LIBS = ("libvirt", "libvirt-qemu", "libvirt-lxc", "libvirt-admin")  # .so.0 -> the tree's .so.0.<version>
_NEWER_EMPTY = ("/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt", "/etc/libvirt")
_NEWER_SCRIPT = r"""set -e
tree=$1 where=$2
for d in {empty}; do mount -t tmpfs -o mode=0755 tmpfs "$d"; done
cp "$where/conf/libvirtd.conf" "$where/conf/qemu.conf" /etc/libvirt/
for p in {binds}; do mount --bind "$tree$p" "$p"; done
for lib in {libs}; do
    mount --bind "$(echo "$tree"/usr/lib/x86_64-linux-gnu/$lib.so.0.*)" /usr/lib/x86_64-linux-gnu/$lib.so.0
done
if [ -e /dev/kvm ]; then mount --bind "$where/no-kvm" /dev/kvm; fi
exec /usr/sbin/libvirtd --pid-file "$where/libvirtd.pid"
"""


@dataclass
class NewerLibvirtd:
    uri: str  # the libvirt URI of its socket (qemu+unix:///system?socket=...)
    version: str  # the Debian package version, e.g. 11.3.0-2~bpo12+1
    namespace: str  # its mount namespace (readlink /proc/<pid>/ns/mnt)


def _processes_in(namespace: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "mnt") == namespace:
                    pids.append(int(entry.name))
            except OSError:
                pass  # gone meanwhile, or not ours to read
    return pids


@pytest.fixture(scope="session")
def libvirtd_newer():
    """bookworm-backports' libvirtd (11.3, root, TCG) in a private mount namespace: its own binaries, modules and
    CPU map bound over the system's there, tmpfs over its state, run, cache, log and config directories, its
    sockets in a directory of its own. Nothing is shared with the libvirtd 9.0 of the `libvirtd` fixture, so both
    run at once. At the end its domains are destroyed and every process of its namespace (it, QEMU) is ended."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run as root")
        pytest.skip("needs root (mount namespaces)")
    sys.path.insert(0, str(HERE.parent))
    import libvirt
    import libvirt_bpo

    tree = libvirt_bpo.tree()
    where = Path(tempfile.mkdtemp(prefix="vs-lv-", dir="/tmp"))  # short: the socket path is under 108 bytes
    (where / "conf").mkdir()
    sock = where / "sock"
    sock.mkdir()
    (where / "no-kvm").touch(mode=0o600)
    (where / "conf" / "libvirtd.conf").write_text(
        f'unix_sock_dir = "{sock}"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
        f'log_outputs = "3:file:{where / "libvirtd.log"}"\n')
    # namespaces = []: see _without_kvm. stdio_handler = "file": QEMU's log without a virtlogd of its own.
    (where / "conf" / "qemu.conf").write_text('namespaces = []\nstdio_handler = "file"\n')
    script = _NEWER_SCRIPT.format(empty=" ".join(_NEWER_EMPTY), binds=" ".join(_NEWER_BINDS),
                                  libs=" ".join(_NEWER_LIBS))
    daemon = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
                               str(tree), str(where)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    uri = f"qemu+unix:///system?socket={sock / 'libvirt-sock'}"
    namespace = ""
    try:
        deadline = time.monotonic() + 180
        while True:  # ready when it answers on its socket
            assert daemon.poll() is None, f"libvirtd {tree.name} ended: {daemon.stderr.read().decode()}"
            try:
                libvirt.open(uri).close()
                break
            except libvirt.libvirtError:
                assert time.monotonic() < deadline, f"libvirtd {tree.name} did not answer on {uri}"
                time.sleep(0.1)
        namespace = os.readlink(f"/proc/{daemon.pid}/ns/mnt")
        yield NewerLibvirtd(uri, tree.name, namespace)
    finally:
        try:
            conn = libvirt.open(uri)
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                dom.destroy()
            conn.close()
        except libvirt.libvirtError:
            pass  # it is gone already: its namespace's processes are ended below all the same
        daemon.terminate()
        daemon.wait(30)
        for pid in _processes_in(namespace) if namespace else []:
            os.kill(pid, signal.SIGKILL)  # a QEMU the destroy above did not reach
        shutil.rmtree(where, ignore_errors=True)


def remove_with_libvirt(oracle, name: str) -> None:
    """A test domain removed through libvirt itself, whatever virtsnap did to it: destroyed if running, its
    snapshots' metadata deleted, undefined."""
    import libvirt

    left = oracle.lookupByName(name)
    if left.isActive():
        left.destroy()
    for snap in left.listAllSnapshots():
        snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    left.undefine()

"""Runtime.pid: which process is a domain's QEMU, asked again and again by one connection (issue 21).

Real processes stand in for QEMU: `sh -c 'sleep 600; exit' UUID` names the domain on its command line, as
QEMU's -uuid does (the shell stays: an exec would drop the uuid from the command line). The pid file says
"pid start-time", as launch() writes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid as uuidlib

import pytest

from virtsnap.drivers.qemu import process
from virtsnap.drivers.qemu.process import Runtime


def start_time(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]


def stand_in(name: str) -> subprocess.Popen[bytes]:
    """The stand-in, once it runs the shell (until its exec, the child's command line is still this one's)."""
    proc = subprocess.Popen(["sh", "-c", "sleep 600; exit", name], start_new_session=True)
    while name.encode() not in open(f"/proc/{proc.pid}/cmdline", "rb").read().split(b"\0"):
        os.sched_yield()
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture()
def domain(tmp_path):
    """A runtime directory named by a fresh uuid, and a way to start a stand-in QEMU recorded in its pid file."""
    uuid = str(uuidlib.uuid4())
    rt = Runtime(tmp_path / uuid)
    os.mkdir(rt.directory, 0o700)
    started: list[subprocess.Popen[bytes]] = []

    def launch(name: str = uuid, record: bool = True) -> subprocess.Popen[bytes]:
        proc = stand_in(name)
        started.append(proc)
        if record:
            with open(rt.pidfile, "w") as f:
                f.write(f"{proc.pid} {start_time(proc.pid)}\n")
        return proc

    yield rt, launch
    for proc in started:
        stop(proc)


def test_a_live_qemu_is_found_every_time_and_keeps_at_most_one_descriptor(domain):
    rt, launch = domain
    proc = launch()
    before = len(os.listdir("/proc/self/fd"))
    assert [rt.pid() for _ in range(5)] == [proc.pid] * 5
    assert len(os.listdir("/proc/self/fd")) <= before + 1  # one pidfd, not one per call
    assert pidfds_of(proc.pid) == 1  # what spares the later calls reading /proc


def pidfds_of(pid: int) -> int:
    """How many of this process's descriptors are pidfds of `pid` (their fdinfo names it)."""
    count = 0
    for fd in os.listdir("/proc/self/fdinfo"):
        with contextlib.suppress(OSError), open(f"/proc/self/fdinfo/{fd}") as f:
            count += f"Pid:\t{pid}\n" in f.read()
    return count


def test_an_ended_qemu_is_not_running_even_before_it_is_reaped(domain):
    rt, launch = domain
    proc = launch()
    assert rt.pid() == proc.pid
    assert rt.pid() == proc.pid  # known now (by its pidfd where the kernel has them)
    os.killpg(proc.pid, signal.SIGKILL)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # ended, still a zombie: nobody has reaped it
    assert rt.pid() is None
    assert rt.pid() is None
    assert pidfds_of(proc.pid) == 0  # its pidfd closed with it


def test_a_new_qemu_replaces_the_one_that_ended(domain):
    rt, launch = domain
    first = launch()
    assert rt.pid() == first.pid and rt.pid() == first.pid
    stop(first)
    second = launch()
    assert rt.pid() == second.pid
    assert rt.pid() == second.pid


def test_a_pid_file_that_names_another_start_time_is_not_that_process(domain):
    """A recycled pid: the same number, another process. Even a process known from earlier calls is not
    taken for the one the file names once the file names another start time."""
    rt, launch = domain
    proc = launch()
    assert rt.pid() == proc.pid and rt.pid() == proc.pid
    with open(rt.pidfile, "w") as f:
        f.write(f"{proc.pid} {int(start_time(proc.pid)) + 1}\n")
    assert rt.pid() is None
    assert rt.pid() is None


def test_a_process_whose_command_line_does_not_name_the_domain_is_not_its_qemu(domain):
    rt, launch = domain
    launch(name="someone-else")
    assert rt.pid() is None
    assert rt.pid() is None


@pytest.mark.parametrize("text", ["", "garbage", "12ab 5", "-1 0"])
def test_an_unreadable_pid_file_means_not_running(domain, text):
    rt, _ = domain
    with open(rt.pidfile, "w") as f:
        f.write(text)
    assert rt.pid() is None


def test_no_pid_file_means_not_running(domain):
    rt, _ = domain
    assert rt.pid() is None


def test_many_domains_keep_a_bounded_number_of_descriptors(tmp_path):
    """A connection that served many domains holds a few pidfds, not one per domain it ever saw."""
    procs = []
    try:
        fds_before = len(os.listdir("/proc/self/fd"))
        for _ in range(80):
            uuid = str(uuidlib.uuid4())
            rt = Runtime(tmp_path / uuid)
            os.mkdir(rt.directory, 0o700)
            proc = stand_in(uuid)
            procs.append(proc)
            with open(rt.pidfile, "w") as f:
                f.write(f"{proc.pid} {start_time(proc.pid)}\n")
            assert rt.pid() == proc.pid and rt.pid() == proc.pid
        assert len(os.listdir("/proc/self/fd")) - fds_before <= 64
    finally:
        for proc in procs:
            stop(proc)


def test_read_text_reads_proc_entries_whose_size_says_zero():
    assert process.read_text(f"/proc/{os.getpid()}/stat").startswith(f"{os.getpid()} (")
    with pytest.raises(OSError):
        process.read_text("/proc/self/no-such-entry")


# Ready (a line on stdout), then on SIGUSR1 the main thread leaves with the exit system call (not exit_group); its
# other thread lives on, reading stdin until it closes.
LEADER_LEAVES = """
import ctypes, signal, sys, threading
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
threading.Thread(target=sys.stdin.read).start()
print("ready", flush=True)
signal.sigwait({signal.SIGUSR1})
ctypes.CDLL(None).syscall(60, 0)  # SYS_exit (x86_64): this thread alone
"""


def test_a_qemu_whose_main_thread_left_but_another_still_runs_is_still_running(domain):
    """A QEMU between its main thread's exit and its last thread's: a zombie leader, its files still open. Known
    by then, it is running until its last thread ends, and wait_gone says the same."""
    rt, _ = domain
    uuid = os.path.basename(rt.directory)
    proc = subprocess.Popen([sys.executable, "-c", LEADER_LEAVES, uuid], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"  # SIGUSR1 blocked by now
        with open(rt.pidfile, "w") as f:
            f.write(f"{proc.pid} {start_time(proc.pid)}\n")
        assert rt.pid() == proc.pid and rt.pid() == proc.pid  # first sight (/proc), then its pidfd
        os.kill(proc.pid, signal.SIGUSR1)
        while process.proc_stat(proc.pid)[0] != "Z":
            os.sched_yield()
        assert rt.pid() == proc.pid
        assert not process.wait_gone(proc.pid, 0.2)
        proc.stdin.close()  # the last thread's read ends: so does the process
        assert process.wait_gone(proc.pid, 30)
        assert rt.pid() is None
    finally:
        proc.kill()
        proc.wait()

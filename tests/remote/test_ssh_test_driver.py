"""test+ssh:// against real sshd hosts: the CLI and the API give what test:///default gives locally, errors
keep their libvirt code, domain and message, and a missing, older or unreachable virtsnap is a clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import virtsnap
from virtsnap.errors import ErrorCode, ErrorDomain

from .conftest import VIRTSNAP, Host

CHAIN = ("snapshot-create-as test s1 --description 'first one'; snapshot-create-as test s2; "
         "snapshot-revert test s1; snapshot-create-as test s3; snapshot-list test --tree; "
         "snapshot-info test s1; snapshot-current test --name; snapshot-parent test s3; "
         "snapshot-delete test s1; snapshot-list test --name --topological; snapshot-info test nosuch; "
         "snapshot-list test --name --roots")


def run_cli(uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VIRTSNAP, "-c", uri, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_cli_chain_over_ssh_equals_local(hosts: list[Host]) -> None:
    local = run_cli("test:///default", CHAIN)
    remote = run_cli(hosts[0].uri("test"), CHAIN)
    assert "s3" in local.stdout and "error: Domain snapshot not found" in local.stderr  # the chain ran
    assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)


def _api_story(conn: virtsnap.virConnect) -> list[object]:
    dom = conn.lookupByName("test")
    out: list[object] = []
    s1 = dom.snapshotCreateXML("<domainsnapshot><name>s1</name><description>d1</description></domainsnapshot>")
    dom.snapshotCreateXML("<domainsnapshot><name>s2</name></domainsnapshot>")
    dom.revertToSnapshot(s1)
    dom.snapshotCreateXML("<domainsnapshot><name>s3</name></domainsnapshot>")
    out.append(sorted(dom.snapshotListNames()))
    out.append(sorted((s.getName(), s.getParent().getName(), s.isCurrent()) for s in dom.listAllSnapshots()
                      if s.getName() != "s1"))
    out.append(s1.numChildren())
    out.append(dom.snapshotCurrent().getName())
    out.append("<description>d1</description>" in s1.getXMLDesc())
    out.append(dom.state())
    for bad in (lambda: dom.snapshotLookupByName("nosuch"), lambda: dom.snapshotNum(1 << 20),
                lambda: dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>"),
                lambda: conn.lookupByName("nosuch")):
        with pytest.raises(virtsnap.libvirtError) as info:
            bad()
        err = info.value
        out.append((err.get_error_code(), err.get_error_domain(), err.get_error_message()))
    s1.delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)
    out.append(sorted(dom.snapshotListNames()))
    s1.delete()
    out.append(dom.snapshotNum())
    return out


def test_api_over_ssh_equals_local(hosts: list[Host]) -> None:
    local_conn = virtsnap.open("test:///default")
    try:
        local = _api_story(local_conn)
    finally:
        local_conn.close()
    conn = virtsnap.open(hosts[1].uri("test"))
    try:
        assert conn.getType() == "TEST"
        remote = _api_story(conn)
    finally:
        conn.close()
    assert remote == local
    assert local[-1] == 0 and local[1]  # the story did what it says


def test_read_only_remote_refuses_writes_and_lists(hosts: list[Host]) -> None:
    conn = virtsnap.openReadOnly(hosts[2].uri("test"))
    try:
        dom = conn.lookupByName("test")
        with pytest.raises(virtsnap.libvirtError) as info:
            dom.snapshotCreateXML("<domainsnapshot/>")
        assert info.value.get_error_code() == ErrorCode.OPERATION_DENIED
        assert dom.snapshotNum() == 0
    finally:
        conn.close()


def test_dropped_connection_is_a_typed_error(hosts: list[Host]) -> None:
    before = set(_children("ssh"))
    conn = virtsnap.open(hosts[0].uri("test"))
    try:
        dom = conn.lookupByName("test")
        (ssh,) = set(_children("ssh")) - before
        os.kill(ssh, 9)  # the connection dies (the ssh client this test's connection started)
        with pytest.raises(virtsnap.libvirtError) as info:
            dom.snapshotNum()
        err = info.value
        assert (err.get_error_code(), err.get_error_domain()) == (ErrorCode.SYSTEM_ERROR, ErrorDomain.RPC)
        assert err.get_error_message().startswith("End of file while reading data")
    finally:
        conn.close()


def _children(name: str) -> list[int]:
    """This process's child processes running `name` (the ssh clients its connections started)."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                pids.append(int(pid))
    return pids


def _connect_error(uri: str) -> virtsnap.libvirtError:
    with pytest.raises(virtsnap.libvirtError) as info:
        virtsnap.open(uri)
    return info.value


def test_missing_remote_virtsnap_names_the_host(hosts: list[Host]) -> None:
    err = _connect_error(hosts[0].uri("test", command="/nonexistent/virtsnap"))
    assert err.get_error_code() == ErrorCode.NO_CONNECT
    assert "virtsnap not found on 127.0.0.1" in err.get_error_message()


def test_older_remote_virtsnap_names_its_version(hosts: list[Host], tmp_path: Path) -> None:
    # An older virtsnap, as it answers: a version, and no `rpc` command.
    old = tmp_path / "virtsnap-0.0.9"
    old.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo 0.0.9; exit 0; }\n"
                   "echo \"error: unknown command: '$1'\" >&2; exit 1\n")
    old.chmod(0o755)
    err = _connect_error(hosts[0].uri("test", command=str(old)))
    assert err.get_error_code() == ErrorCode.NO_CONNECT
    assert "virtsnap 0.0.9 on 127.0.0.1 does not speak rpc protocol 1" in err.get_error_message()


def test_unknown_host_key_is_refused(hosts: list[Host]) -> None:
    # beta's known_hosts does not know alpha's key: ssh refuses (BatchMode: no prompt), nothing runs there.
    err = _connect_error(hosts[0].uri("test", known_hosts=str(hosts[1].known_hosts)))
    assert (err.get_error_code(), err.get_error_domain()) == (ErrorCode.SYSTEM_ERROR, ErrorDomain.RPC)
    assert "Host key verification failed" in err.get_error_message()


def test_unsupported_uri_parameters_are_named(hosts: list[Host]) -> None:
    err = _connect_error(hosts[0].uri("test", socket="/x", netcat="nc"))
    assert err.get_error_code() == ErrorCode.INVALID_ARG
    assert "unsupported URI parameters for test+ssh: netcat, socket" in err.get_error_message()
    err = _connect_error(hosts[0].uri("test", keyfile="/tmp/a%20b"))
    assert err.get_error_code() == ErrorCode.INVALID_ARG


def test_remote_uri_is_one_quoted_word(hosts: list[Host]) -> None:
    # A path with shell syntax reaches the remote virtsnap as data, not as a command.
    marker = hosts[0].state / "pwned"
    err = _connect_error(hosts[0].uri("test", path=f"/default;touch {marker}"))
    assert err.get_error_code() == ErrorCode.NO_SUPPORT
    assert not marker.exists()


def test_server_speaks_versioned_json_lines() -> None:
    lines = ('{"id":1,"method":"snapshot_create","params":["6695eb01-f6a4-8304-79aa-97f2502e193f",'
             '"<domainsnapshot><name>s1</name></domainsnapshot>",0]}\n{"id":2,"method":"nope","params":[]}\n')
    done = subprocess.run([sys.executable, "-m", "virtsnap", "rpc", "--stdio", "test:///default"], input=lines,
                          capture_output=True, text=True, timeout=60)
    out = done.stdout.splitlines()
    assert out[0] == f'{{"virtsnap-rpc":1,"version":"{virtsnap.__version__}"}}'
    assert '"func_prefix":"test"' in out[1]
    assert out[2:] == ['{"id":1,"result":"s1"}',
                       '{"id":2,"error":{"code":1,"domain":7,"message":"internal error: unknown rpc call \'nope\'"}}']


def test_server_cancel_before_start_runs_nothing() -> None:
    uuid = "6695eb01-f6a4-8304-79aa-97f2502e193f"
    lines = ('{"cancel":1}\n'
             f'{{"id":1,"method":"snapshot_create","params":["{uuid}","<domainsnapshot/>",0]}}\n'
             f'{{"id":2,"method":"snapshot_forest","params":["{uuid}"]}}\n')
    done = subprocess.run([sys.executable, "-m", "virtsnap", "rpc", "--stdio", "test:///default"], input=lines,
                          capture_output=True, text=True, timeout=60)
    out = done.stdout.splitlines()
    assert out[2] == ('{"id":1,"interrupted":true,"error":{"code":78,"domain":0,'
                      '"message":"operation aborted: interrupted"}}')
    assert '"rows":[]' in out[3]

"""libvirt+qemu+ssh://: the URI after `libvirt+` goes to libvirt's own remote driver (libvirt-python's ssh
transport and virt-ssh-helper on the host), not to virtsnap's `+ssh` driver: against an sshd test host in front
of the machine's libvirtd 9.0 it answers what libvirt+qemu:///system answers locally."""

from __future__ import annotations

import getpass
from pathlib import Path

import virtsnap
from tests.qemu_guest.conftest import libvirtd  # noqa: F401

from .conftest import Host


def test_libvirt_qemu_ssh_reaches_libvirtd_through_libvirts_remote(libvirtd, hosts: list[Host],  # noqa: F811
                                                                   tmp_path: Path) -> None:
    host = hosts[0]
    # libvirt's ssh transport has no known_hosts parameter (only its libssh ones do): its `command` parameter
    # names the ssh program, here one that reads the test's known_hosts and never prompts
    ssh = tmp_path / "ssh"
    ssh.write_text(f"#!/bin/sh\nexec ssh -o UserKnownHostsFile={host.known_hosts} -o BatchMode=yes \"$@\"\n")
    ssh.chmod(0o755)
    uri = (f"libvirt+qemu+ssh://{getpass.getuser()}@127.0.0.1:{host.port}/system"
           f"?keyfile={host.client_key}&command={ssh}&no_tty=1")
    remote = virtsnap.openReadOnly(uri)
    local = virtsnap.openReadOnly("libvirt+qemu:///system")
    try:
        assert remote.getURI() == uri
        assert remote.getHostname() == local.getHostname()
        assert remote.getLibVersion() == local.getLibVersion() == 9000000
        assert sorted(d.UUIDString() for d in remote.listAllDomains()) == sorted(
            d.UUIDString() for d in local.listAllDomains())
    finally:
        remote.close()
        local.close()

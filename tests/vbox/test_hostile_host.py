"""What a VirtualBox host virtsnap does not control can hand it: a FIFO as a machine's settings file, snapshot
and machine names carrying terminal escapes. Run through the CLI against the stand-in VBoxManage."""

from __future__ import annotations

import os
import subprocess
import sys

from vboxfake import ALPHA, FakeVBox


def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    # The timeout only guards this test process from a hang; the assertions say what must happen.
    return subprocess.run([sys.executable, "-m", "virtsnap", "-c", "vbox:///session", *args], text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False)


def test_fifo_settings_file_is_an_error_not_a_hang(fake_vbox: FakeVBox) -> None:
    assert virsh("snapshot-create-as", "alpha", "a").returncode == 0
    vm = fake_vbox.vm(ALPHA)
    settings = os.path.join(vm["dir"], vm["name"] + ".vbox")
    os.unlink(settings)
    os.mkfifo(settings)  # newer than the fake's state, so the fake leaves it alone
    for command in ("snapshot-list alpha", "snapshot-list alpha --tree", "snapshot-current alpha --name",
                    "snapshot-info alpha a", "snapshot-dumpxml alpha a"):
        out = virsh(command)
        assert out.returncode == 1, (command, out)
        assert out.stderr == (f"error: operation failed: settings file '{settings}' of domain 'alpha' is not "
                              "a regular file\n"), command

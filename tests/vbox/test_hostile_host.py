"""What a VirtualBox host virtsnap does not control can hand it: a FIFO as a machine's settings file, snapshot
and machine names carrying terminal escapes. Run through the CLI against the stand-in VBoxManage."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any
from xml.etree import ElementTree

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


ESC = "\x1b]0;owned\x07\x1b[2J"  # sets the terminal title, clears the screen
C1 = "\x9b31m\x85"  # CSI and NEL as single C1 characters
BIDI = "\u202egpj.exe\u2066x\u2069"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def test_names_from_virtualbox_are_escaped_in_every_output(fake_vbox: FakeVBox) -> None:
    """Names VirtualBox holds (set behind virtsnap's back) cannot be refused: every command prints them
    escaped, as virsh's table does (`\\xNN`), XML as character references and JSON as `\\uXXXX`, with the
    same meaning: the name read back from the XML or JSON is the name VirtualBox has."""
    assert virsh("snapshot-create-as alpha a; snapshot-create-as alpha b; snapshot-create-as alpha c").returncode == 0
    names = {"a": f"esc{ESC}", "b": f"c1{C1}", "c": f"bidi{BIDI}"}

    def rename(state: dict[str, Any]) -> None:
        vm = next(vm for vm in state["vms"] if vm["uuid"] == ALPHA)
        vm["name"] = f"alpha{BIDI}"
        for snap in vm["snapshots"].values():
            snap["name"] = names[snap["name"]]
            snap["description"] = f"described {C1}{BIDI}"

    fake_vbox.update(rename)
    dom = ALPHA  # the uuid: the name is what is hostile
    a, b, c = names["a"], names["b"], names["c"]
    commands = ["list --all", "list --all --name", f"dominfo {dom}", f"dominfo {dom} --json",
                f"dumpxml {dom}", f"snapshot-list {dom}", f"snapshot-list {dom} --parent",
                f"snapshot-list {dom} --name", f"snapshot-list {dom} --tree", f"snapshot-list {dom} --json",
                f"snapshot-current {dom} --name", f"snapshot-current {dom}", f"snapshot-current {dom} --json",
                f"snapshot-parent {dom} --current", f"snapshot-dumpxml {dom} '{b}'",
                f"snapshot-revert {dom} --current", f"snapshot-info {dom} --current",
                f"snapshot-info {dom} --current --json", f"snapshot-delete {dom} --current --metadata",
                f"snapshot-info {dom} 'nope{a}'", f"snapshot-create-as {dom} '{c}'"]
    run = virsh("; echo @@@; ".join(commands))  # one process: virsh runs a chain on after a failed command
    assert not RAW.search(run.stdout), run.stdout
    assert not RAW.search(run.stderr), run.stderr
    assert "Traceback" not in run.stderr
    outputs = dict(zip(commands, run.stdout.split("@@@\n"), strict=True))
    # escaped as the table escapes, in every plain-text output
    assert "\\x1b]0;owned\\x07\\x1b[2J" in outputs[f"snapshot-list {dom} --name"]
    assert "c1\\xc2\\x9b31m\\xc2\\x85" in outputs[f"snapshot-list {dom} --tree"]
    assert outputs[f"snapshot-current {dom} --name"] == "bidi\\xe2\\x80\\xaegpj.exe\\xe2\\x81\\xa6x\\xe2\\x81\\xa9\n"
    assert "alpha\\xe2\\x80\\xae" in outputs[f"snapshot-info {dom} --current"]
    assert "alpha\\xe2\\x80\\xae" in outputs["list --all --name"]
    # XML and JSON keep their meaning
    current_json = json.loads(outputs[f"snapshot-current {dom} --json"])
    assert current_json["name"] == c and current_json["domain"] == f"alpha{BIDI}"
    assert f"<name>{c}</name>" in current_json["xml"]
    assert [e["name"] for e in json.loads(outputs[f"snapshot-list {dom} --json"])] == sorted([a, b, c])
    xml = ElementTree.fromstring(outputs[f"snapshot-current {dom}"])
    assert xml.findtext("name") == c and xml.findtext("description") == f"described {C1}{BIDI}"
    # errors that quote a name escape it too
    assert "invalid snapshot name 'bidi\\xe2\\x80\\xaegpj.exe" in run.stderr
    assert "nopeesc\\x1b]0;owned" in run.stderr

    # An escape character cannot be written in XML, so the settings file holding one does not parse and the
    # snapshots lack a state (no table rows); with the C1 and bidi names alone, the table and info show them.
    def tame(state: dict[str, Any]) -> None:
        vm = next(vm for vm in state["vms"] if vm["uuid"] == ALPHA)
        for snap in vm["snapshots"].values():
            if snap["name"] == a:
                snap["name"] = "plain"

    fake_vbox.update(tame)
    run = virsh(f"snapshot-list {dom} --parent; snapshot-info {dom} '{b}'")
    assert run.returncode == 0, run.stderr
    assert not RAW.search(run.stdout) and not RAW.search(run.stderr)
    rows = [line for line in run.stdout.splitlines() if " shutoff " in line]
    assert [row.split()[0] for row in rows] == ["bidi\\xff\\xff\\xffgpj.exe\\xff\\xff\\xffx\\xff\\xff\\xff",
                                                "c1\\xff\\xff31m\\xff\\xff", "plain"]  # virsh's own \\xff
    assert "Name:           c1\\xc2\\x9b31m\\xc2\\x85\n" in run.stdout
    assert "Parent:         plain\n" in run.stdout

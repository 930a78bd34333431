"""A read-only command imports only what it uses (issue 21): a cold `snapshot-current` does not load the
domain commands' tables, the create/delete/space machinery of the QEMU driver, or the retention rules.

Checked in a fresh interpreter by the modules present after the command ran, not by time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from qemu_offline import define_offline

from virtsnap.cli import registry

# What no read-only snapshot command needs: other commands' tables, creation (REDEFINE), the guest agent,
# the space checks, the file ledger, retention rules, QMP.
NOT_FOR_READING = ("virtsnap.cli.cmd_domain", "virtsnap.cli.cmd_space", "virtsnap.cli.cmd_check",
                   "virtsnap.cli.cmd_virsh",  # help's table: loaded when a command is given --help
                   "virtsnap.cli.cmd_complete", "virtsnap.conf.redefine", "virtsnap.conf.prune",
                   "virtsnap.drivers.qemu.agent", "virtsnap.drivers.qemu.space", "virtsnap.drivers.qemu.monitor",
                   "virtsnap.drivers.qemu.extdelete", "asyncio", "qemu.qmp", "json",
                   # typing is for the checker only (~3 ms of a cold start); paths are strings (pathlib
                   # brings urllib.parse and ipaddress, ~6 ms); the sqlite3 package's datetime adapters
                   # (~3.5 ms) are never used; the QEMU view of a domain and its images are for operations
                   "typing", "pathlib", "urllib.parse", "ipaddress", "datetime", "sqlite3.dbapi2",
                   # re and the enum it imports (~15 M instructions) are for snapshot-edit and rare texts;
                   # virtsnap's own enumerations are made without enum (virtsnap.enums)
                   "re", "enum",
                   # libvirt-python's constants and the classes virtsnap does not implement (surface.py)
                   "virtsnap.surface_more",
                   "virtsnap.drivers.qemu.domain", "virtsnap.drivers.qemu.external",
                   "virtsnap.drivers.qemu.images", "virtsnap.drivers.qemu.firmware",
                   # threads (~3 M instructions, and more work at exit): locks come from _thread (virtsnap.locks);
                   # thread-local errors, event registrations and the kept monitors' reader are made when used
                   "threading", "_weakrefset")
PROBE = ("import sys, runpy\nsys.argv = ['virtsnap', *sys.argv[1:]]\n"
         "from virtsnap.cli.main import main\nstatus = main(sys.argv[1:])\n"
         "sys.stdout.flush()\nprint('\\n@@' + repr(sorted(sys.modules)))\nsys.exit(status)\n")


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("lazy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIRTSNAP_QEMU_STATE_DIR", str(work / "state"))
        _, dom, _ = define_offline(work, "demo")
        for name, parent in (("one", None), ("two", "one")):
            parent_xml = f"<parent><name>{parent}</name></parent>" if parent else ""
            dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name><state>shutoff</state>{parent_xml}"
                                  "<creationTime>1700000000</creationTime><memory snapshot='no'/>"
                                  "<disks><disk name='vda' snapshot='internal'/></disks>"
                                  f"{dom.XMLDesc(0)}</domainsnapshot>", 1 | 2)  # REDEFINE | CURRENT
    return work / "state"


def modules_after(state: Path, *argv: str, uri: str = "qemu:///session") -> set[str]:
    env = dict(os.environ, VIRTSNAP_QEMU_STATE_DIR=str(state))
    proc = subprocess.run([sys.executable, "-c", PROBE, "-c", uri, *argv], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    out, _, listing = proc.stdout.rpartition("\n@@")
    assert out.strip(), "the command printed nothing"
    return set(json.loads(listing.replace("'", '"')))


@pytest.mark.parametrize("command", ["snapshot-current demo", "snapshot-current demo --name",
                                     "snapshot-info demo two", "snapshot-parent demo two",
                                     "snapshot-dumpxml demo two", "snapshot-list demo"])
def test_read_only_commands_import_only_what_they_use(state, command):
    loaded = modules_after(state, *command.split())
    assert "virtsnap.cli.cmd_snapshot" in loaded  # the probe does see the modules a command uses
    assert not loaded & set(NOT_FOR_READING), sorted(loaded & set(NOT_FOR_READING))


@pytest.mark.parametrize(("uri", "command", "uses"), [
    ("qemu:///session", "list --all", "virtsnap.cli.cmd_domain"),  # its own command table
    ("test:///default", "snapshot-list test", "virtsnap.conf.redefine"),  # imported with the test driver
])
def test_other_read_only_commands_import_only_what_they_use(state, uri, command, uses):
    """The same list holds for a domain command and for another driver, but for what the command does use."""
    loaded = modules_after(state, *command.split(), uri=uri)
    assert uses in loaded  # so the exception below is still needed
    assert not loaded & (set(NOT_FOR_READING) - {uses}), sorted(loaded & (set(NOT_FOR_READING) - {uses}))


def test_lazy_registry_index_matches_the_command_tables():
    """WHERE (which module holds each command, read without importing any) agrees with the tables."""
    for group in registry.groups():
        for command in group.commands:
            assert registry.find_command(command.name) is command
            module = sys.modules[f"virtsnap.cli.{registry.WHERE[command.name]}"]
            assert any(command in table for table in vars(module).values() if isinstance(table, tuple))
    assert set(registry.WHERE) == set(registry.COMMANDS)


@pytest.mark.parametrize("command", ["snapshot-current demo --name", "snapshot-parent demo two",
                                     "snapshot-list demo"])
def test_commands_that_read_no_definition_load_no_xml_model(state, command):
    """Names and parents come from the store's columns: the XML model (and its parser) is not loaded."""
    loaded = modules_after(state, *command.split())
    xml_model = {"virtsnap.conf.snapshot_xml", "virtsnap.conf.domain_xml", "virtsnap.conf.xmlutil"}
    assert not loaded & xml_model, sorted(loaded & xml_model)

"""Terminal escapes never reach the terminal from test:///default or the QEMU driver: snapshot and domain names
with C1 controls, bidi overrides or line separators are refused (VIR_ERR_XML_ERROR) like C0 controls,
and text that may hold them (descriptions, names an earlier virtsnap stored) is printed escaped: `\\xNN` as
virsh's table does, XML as character references and JSON as `\\uXXXX`, with its meaning kept.
(The VirtualBox side, whose names cannot be refused, is tests/vbox/test_hostile_host.py.)"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from qemu_offline import define_offline

import virtsnap

RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
HOSTILE = {"csi": "a\x9b2Jb", "nel": "a\x85b", "rlo": "txt\u202egpj.exe", "rli": "a\u2067b\u2069",
           "lrm": "a\u200eb", "line-separator": "a\u2028b"}


def cli(uri: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "virtsnap", "-c", uri, command], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)


def xml_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else f"&#x{ord(c):x};" for c in name)


@pytest.fixture
def qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[virtsnap.virConnect, virtsnap.virDomain]:
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn, dom, _ = define_offline(tmp_path, "d")
    return conn, dom


@pytest.mark.parametrize("uri", ["test:///default", "qemu:///session"])
def test_hostile_names_are_refused(uri: str, qemu: tuple[virtsnap.virConnect, virtsnap.virDomain]) -> None:
    conn = virtsnap.open(uri)
    dom = conn.lookupByName("test" if uri.startswith("test") else "d")
    before = dom.snapshotListNames()
    for label, name in HOSTILE.items():
        for flags, extra in ((0, ""), (virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE,
                                       "<state>shutoff</state><creationTime>1</creationTime>")):
            with pytest.raises(virtsnap.libvirtError) as info:
                dom.snapshotCreateXML(f"<domainsnapshot><name>{xml_name(name)}</name>{extra}</domainsnapshot>", flags)
            assert info.value.get_error_code() == virtsnap.VIR_ERR_XML_ERROR, (label, info.value)
            assert not RAW.search(info.value.get_error_message()), label
        with pytest.raises(virtsnap.libvirtError) as info:
            conn.defineXML(f"<domain type='{'test' if uri.startswith('test') else 'qemu'}'>"
                           f"<name>{xml_name(name)}</name><memory>65536</memory><os><type>hvm</type></os></domain>")
        assert info.value.get_error_code() == virtsnap.VIR_ERR_XML_ERROR, (label, info.value)
    assert dom.snapshotListNames() == before
    assert len(conn.listAllDomains()) == 1
    # through the CLI: a one-line error, the name in it escaped, nothing created
    for name in HOSTILE.values():
        run = cli(uri, f"snapshot-create-as {dom.name()} '{name}'; snapshot-list {dom.name()} --name")
        assert "invalid snapshot name" in run.stderr and not RAW.search(run.stderr + run.stdout), run
        assert run.stdout.split() == before
    conn.close()


@pytest.mark.parametrize("uri", ["test:///default", "qemu:///session"])
def test_descriptions_print_escaped_with_their_meaning_kept(uri: str, qemu: tuple[virtsnap.virConnect,
                                                                                 virtsnap.virDomain]) -> None:
    description = "note \x9b2J\u202eevil\u2066x\u2069"
    domname = "test" if uri.startswith("test") else "d"
    xml = f"<domainsnapshot><name>s1</name><description>{xml_name(description)}</description></domainsnapshot>"
    commands = [f"snapshot-dumpxml {domname} s1", f"snapshot-current {domname}", f"snapshot-current {domname} --json",
                f"snapshot-list {domname} --json", f"snapshot-info {domname} s1 --json"]
    script = "; echo @@@; ".join(commands)
    with virtsnap.open(uri) as conn:
        snap = conn.lookupByName(domname).snapshotCreateXML(xml)
        try:
            if uri.startswith("test"):  # the test driver lives in one process: create and print in the same one
                outputs = in_process(uri, script)
            else:
                outputs = cli(uri, script).stdout
        finally:
            snap.delete()  # test:///default is shared by every test of this process
    assert not RAW.search(outputs), outputs
    parts = outputs.split("@@@\n")
    assert ElementTree.fromstring(parts[0]).findtext("description") == description
    assert ElementTree.fromstring(parts[1]).findtext("description") == description
    assert ElementTree.fromstring(json.loads(parts[2])["xml"]).findtext("description") == description
    assert json.loads(parts[3])[0]["description"] == description
    assert "&#x202e;" in parts[0] and "\\u202e" in parts[3]


def in_process(uri: str, script: str) -> str:
    import contextlib
    import io

    from virtsnap.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["-c", uri, script])
    return out.getvalue()


def test_names_an_earlier_virtsnap_stored_still_load_and_print_escaped(
        qemu: tuple[virtsnap.virConnect, virtsnap.virDomain], tmp_path: Path) -> None:
    """A store written before names were checked for C1 and bidi characters: its snapshot still loads (stored
    documents are trusted), and every output escapes its name."""
    conn, dom = qemu
    dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    conn.close()
    legacy = "old\u202eevil\x9b"
    db = sqlite3.connect(tmp_path / "state" / "metadata.db")
    with db:
        db.execute("UPDATE snapshots SET name=?, xml=replace(xml, '<name>s1</name>', ?)",
                   (legacy, f"<name>{legacy}</name>"))
        db.execute("UPDATE domains SET current=?", (legacy,))
    db.close()
    run = cli("qemu:///session", "snapshot-list d --name; snapshot-list d --tree; snapshot-list d; "
                                 "snapshot-current d --name; snapshot-info d --current; snapshot-list d --json; "
                                 "snapshot-dumpxml d --snapshotname nonexistent")
    assert not RAW.search(run.stdout + run.stderr), run
    shown = "old\\xe2\\x80\\xaeevil\\xc2\\x9b"
    assert run.stdout.startswith(f"{shown}\n\n{shown}\n\n")
    assert f"Name:           {shown}\n" in run.stdout
    assert '"name": "old\\u202eevil\\u009b"' in run.stdout


def test_every_character_that_hides_text_is_caught_by_the_fast_path() -> None:
    """terminal_text, xml_text, json_text and name checks pass text that str.isprintable() accepts without
    looking further: every one of the characters they escape or refuse must be one it rejects."""
    from virtsnap.conf.unsafe import hides_text, name_problem, terminal_text

    unsafe = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
    caught = [c for c in map(chr, range(0x110000)) if unsafe.match(c)]
    assert len(caught) == 32 + 33 + 3 + 7 + 4 + 2048
    for c in caught:
        assert not c.isprintable() and hides_text(c), hex(ord(c))
        assert terminal_text(f"a{c}b") != f"a{c}b" and name_problem(f"a{c}b") is not None, hex(ord(c))
    # and the printable text around them is left as it is
    assert terminal_text("snap\u200bshot é ✓") == "snap\u200bshot é ✓" and name_problem("é ✓ snap") is None

"""Hostile input, one table, two front doors: every case runs through the API and through the CLI.

Each case names the libvirt error code the API must raise and the CLI command(s) that carry the same input.
For the API, state (domains, their XML and state, every snapshot's XML, parent and the current snapshot) is
compared before and after the call on one test:///default connection. For the CLI (a fresh process per case,
test:///default state lives in that process only), the chain is

    SETUP; DUMP; HOSTILE; DUMP; HOSTILE

so the two DUMPs prove the first HOSTILE changed nothing and the exit status is the second HOSTILE's (1).
Syntax errors reject the whole chain before anything runs (stdout stays empty); global-option and URI cases
run alone. The CLI must exit 1, print only `error: ` lines (plus the two context lines libvirt's XML parser
errors carry), no traceback, no wrapped Python exception and no secret.

Cases marked `api_bug` / `cli_bug` are known bugs: strict xfail, so they fail loudly once fixed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

import virtsnap

REDEFINE = virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
CURRENT = virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # test:///default's domain
PASSWD_LEAK = re.compile(r"root:[^:\n]*:0:0:")
WRAPPED_PY_EXC = re.compile(r"internal error: [A-Za-z_]*(Error|Exception|Warning)\b")


# -- the cases ----------------------------------------------------------------------------------------
@dataclass
class Ctx:
    """What an API case can reach: the connection, the domain, snapshot handles, the case's files."""

    conn: virtsnap.virConnect
    dom: virtsnap.virDomain
    files: dict[str, str]

    def snap(self, name: str) -> virtsnap.virDomainSnapshot:
        return self.dom.snapshotLookupByName(name)


@dataclass
class Case:
    id: str
    group: str
    codes: frozenset[int]
    api: Callable[[Ctx], Any] | None = None
    # (call(ctx, flags), flags the test driver accepts): every other bit of 32, alone, must be refused
    flag_probe: tuple[Callable[[Ctx, int], Any], int] | None = None
    cli: str | list[str] | None = None  # a chain fragment ("chain"/"parse") or the whole argv ("argv")
    cli_kind: str = "chain"  # chain: runtime error | parse: rejected by the parser | argv: global options
    cli_expect: str | None = None  # a substring stderr must contain
    files: dict[str, bytes] = field(default_factory=dict)
    secret: str | None = None  # must appear in no message, no output
    api_bug: str | None = None
    cli_bug: str | None = None


def q(text: str) -> str:
    """Quote one word for a virsh command string (double quotes: backslash escapes, newlines kept)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def xesc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def snap_xml(name: str) -> str:
    return f"<domainsnapshot><name>{xesc(name)}</name></domainsnapshot>"


def redefine_xml(name: str, extra: str = "") -> str:
    return (f"<domainsnapshot><name>{xesc(name)}</name><state>running</state>"
            f"<creationTime>1</creationTime>{extra}</domainsnapshot>")


def dom_xml(name: str, extra: str = "") -> str:
    return f"<domain type='test'><name>{xesc(name)}</name><memory>1024</memory>{extra}</domain>"


def create(xml: str, flags: int = 0) -> Callable[[Ctx], Any]:
    return lambda c: c.dom.snapshotCreateXML(xml, flags)


def define(xml: str) -> Callable[[Ctx], Any]:
    return lambda c: c.conn.defineXML(xml)


def opener(uri: str) -> Callable[[Ctx], Any]:
    def call(c: Ctx) -> None:
        conn = virtsnap.open(uri)
        conn.close()
        raise AssertionError(f"{uri!r} opened")
    return call


BOMB = ('<?xml version="1.0"?>\n<!DOCTYPE {root} [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
        '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]>\n')
XXE = '<?xml version="1.0"?>\n<!DOCTYPE {root} [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
PARAM = '<?xml version="1.0"?>\n<!DOCTYPE {root} [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>\n'
EXT_DTD = '<!DOCTYPE {root} SYSTEM "file:///etc/passwd">\n'
MIB10 = 10 * 1024 * 1024
DEEP = 300


def deep(root_open: str, root_close: str) -> str:
    return root_open + "<a>" * DEEP + "</a>" * DEEP + root_close


BIG_SNAP = "<domainsnapshot><name>big</name><description>" + "x" * MIB10 + "</description></domainsnapshot>"
BIG_DOM = dom_xml("big", "<description>" + "x" * MIB10 + "</description>")
HUGE_ARG = "h" * 60_000  # two of them fit a chain under Linux's 128 KiB per-argument limit

CASES: list[Case] = [
    # ---- snapshot XML (API redefine/create; CLI snapshot-create FILE) ---------------------------------
    Case("snap-entity-bomb-redefine", "snapshot-xml", frozenset({27, 35}),
         create(BOMB.format(root="domainsnapshot") + redefine_xml("x").replace("<name>x", "<name>&e;"), REDEFINE),
         cli="snapshot-create test {f} --redefine",
         files={"f": (BOMB.format(root="domainsnapshot")
                      + "<domainsnapshot><name>&e;</name></domainsnapshot>").encode()}),
    Case("snap-xxe-in-embedded-domain", "snapshot-xml", frozenset({27, 35}),
         create(XXE.format(root="domainsnapshot")
                + redefine_xml("x", f"<domain type='test'><name>test</name><uuid>{UUID}</uuid>"
                                    "<description>&x;</description></domain>"), REDEFINE),
         cli="snapshot-create test {f} --redefine",
         files={"f": (XXE.format(root="domainsnapshot")
                      + "<domainsnapshot><name>x</name><description>&x;</description></domainsnapshot>").encode()}),
    Case("snap-parameter-entity", "snapshot-xml", frozenset({27, 35}),
         create(PARAM.format(root="domainsnapshot") + redefine_xml("x"), REDEFINE),
         cli="snapshot-create test {f}", files={"f": (PARAM.format(root="domainsnapshot") + snap_xml("x")).encode()}),
    Case("snap-external-dtd", "snapshot-xml", frozenset({27, 35}),
         create(EXT_DTD.format(root="domainsnapshot") + snap_xml("x")),
         cli="snapshot-create test {f}", files={"f": (EXT_DTD.format(root="domainsnapshot") + snap_xml("x")).encode()}),
    Case("snap-internal-doctype", "snapshot-xml", frozenset({27}),
         create("<!DOCTYPE domainsnapshot []>" + snap_xml("x")),
         cli="snapshot-create test {f}", files={"f": ("<!DOCTYPE domainsnapshot []>" + snap_xml("x")).encode()}),
    Case("snap-10mib-redefine", "snapshot-xml", frozenset({27, 35}), create(BIG_SNAP, REDEFINE),
         cli="snapshot-create test {f} --redefine", files={"f": BIG_SNAP.encode()}),
    Case("snap-deep-nesting-redefine", "snapshot-xml", frozenset({27, 35}),
         create(deep("<domainsnapshot><name>d</name><state>running</state><creationTime>1</creationTime>",
                     "</domainsnapshot>"), REDEFINE),
         cli="snapshot-create test {f}",
         files={"f": deep("<domainsnapshot><name>d</name>", "</domainsnapshot>").encode()}),
    Case("snap-invalid-utf8-no-declaration", "snapshot-xml", frozenset({27, 35}),
         create("<domainsnapshot><name>ok</name><description>\udcff\udcfe</description></domainsnapshot>"),
         cli="snapshot-create test {f}",
         files={"f": b"<domainsnapshot><name>ok</name><description>\xff\xfe</description></domainsnapshot>"}),
    Case("snap-invalid-utf8-with-declaration", "snapshot-xml", frozenset({27, 35}),
         create("<?xml version='1.0'?><domainsnapshot><name>a\udcffb</name></domainsnapshot>"),
         cli="snapshot-create test {f}",
         files={"f": b"<?xml version='1.0'?><domainsnapshot><name>a\xffb</name></domainsnapshot>"}),
    # A Python str is already decoded, so the API ignores its declared encoding; the file's bytes are refused.
    Case("snap-utf16-declaration", "snapshot-xml", frozenset({27, 35}),
         cli="snapshot-create test {f}",
         files={"f": ("<?xml version='1.0' encoding='UTF-16'?>" + snap_xml("u")).encode("utf-16")}),
    Case("snap-wrong-root-redefine", "snapshot-xml", frozenset({27}),
         create(dom_xml("test", f"<uuid>{UUID}</uuid>"), REDEFINE),
         cli="snapshot-create test {f} --redefine", files={"f": dom_xml("test").encode()}),
    Case("snap-namespaced-root", "snapshot-xml", frozenset({27}),
         create("<domainsnapshot xmlns='http://libvirt.org/schemas/evil'><name>n</name></domainsnapshot>"),
         cli="snapshot-create test {f}",
         files={"f": b"<s:domainsnapshot xmlns:s='urn:x'><s:name>n</s:name></s:domainsnapshot>"}),
    Case("snap-trailing-content", "snapshot-xml", frozenset({35}),
         create(snap_xml("t") + "<domainsnapshot><name>t2</name></domainsnapshot>"),
         cli="snapshot-create test {f}", files={"f": (snap_xml("t") + "<x/>").encode()}),
    Case("snap-unclosed", "snapshot-xml", frozenset({35}), create("<domainsnapshot><name>u</name>"),
         cli="snapshot-create test {f}", files={"f": b"<domainsnapshot><name>u</name><description>"}),
    Case("snap-redefine-online-to-offline", "snapshot-xml", frozenset({8}),
         create("<domainsnapshot><name>s1</name><state>shutoff</state><creationTime>1</creationTime>"
                "</domainsnapshot>", REDEFINE),
         cli="snapshot-create test {f} --redefine",
         files={"f": b"<domainsnapshot><name>s1</name><state>shutoff</state><creationTime>1</creationTime>"
                     b"</domainsnapshot>"}),
    Case("snap-redefine-foreign-uuid", "snapshot-xml", frozenset({8}),
         create(redefine_xml("f", "<domain type='test'><name>test</name>"
                                  "<uuid>11111111-2222-3333-4444-555555555555</uuid></domain>"), REDEFINE),
         cli="snapshot-create test {f} --redefine",
         files={"f": redefine_xml("f", "<domain type='test'><name>test</name>"
                                       "<uuid>11111111-2222-3333-4444-555555555555</uuid></domain>").encode()}),
    Case("snap-redefine-own-parent", "snapshot-xml", frozenset({8}),
         create(redefine_xml("s1", "<parent><name>s1</name></parent>"), REDEFINE),
         cli="snapshot-create test {f} --redefine",
         files={"f": redefine_xml("s1", "<parent><name>s1</name></parent>").encode()}),
    Case("snap-redefine-cycle", "snapshot-xml", frozenset({8}),
         create(redefine_xml("s1", "<parent><name>s2</name></parent>"), REDEFINE),
         cli="snapshot-create test {f} --redefine",
         files={"f": redefine_xml("s1", "<parent><name>s2</name></parent>").encode()}),
    Case("snap-redefine-hostile-parent", "snapshot-xml", frozenset({8}),
         create(redefine_xml("p", "<parent><name>../s1</name></parent>"), REDEFINE),
         cli="snapshot-create test {f} --redefine",
         files={"f": redefine_xml("p", "<parent><name>../s1</name></parent>").encode()}),
    # ---- domain XML (API defineXML; CLI define FILE) -------------------------------------------------
    Case("dom-entity-bomb", "domain-xml", frozenset({27, 35}),
         define(BOMB.format(root="domain") + dom_xml("x").replace("<name>x", "<name>&e;")),
         cli="define {f}",
         files={"f": (BOMB.format(root="domain") + dom_xml("x").replace("<name>x", "<name>&e;")).encode()}),
    Case("dom-xxe", "domain-xml", frozenset({27, 35}),
         define(XXE.format(root="domain") + dom_xml("x", "<description>&x;</description>")),
         cli="define {f}",
         files={"f": (XXE.format(root="domain") + dom_xml("x", "<description>&x;</description>")).encode()}),
    Case("dom-parameter-entity", "domain-xml", frozenset({27, 35}),
         define(PARAM.format(root="domain") + dom_xml("x")),
         cli="define {f}", files={"f": (PARAM.format(root="domain") + dom_xml("x")).encode()}),
    Case("dom-external-dtd", "domain-xml", frozenset({27, 35}), define(EXT_DTD.format(root="domain") + dom_xml("x")),
         cli="define {f}", files={"f": (EXT_DTD.format(root="domain") + dom_xml("x")).encode()}),
    Case("dom-10mib", "domain-xml", frozenset({27, 35}), define(BIG_DOM),
         cli="define {f}", files={"f": BIG_DOM.encode()}),
    Case("dom-deep-nesting", "domain-xml", frozenset({27, 35}),
         define(deep("<domain type='test'><name>deep</name>", "</domain>")),
         cli="define {f}", files={"f": deep("<domain type='test'><name>deep</name>", "</domain>").encode()}),
    Case("dom-invalid-utf8", "domain-xml", frozenset({27, 35}), define(dom_xml("bad\udcff")),
         cli="define {f}", files={"f": b"<domain type='test'><name>bad\xff</name></domain>"}),
    Case("dom-wrong-root", "domain-xml", frozenset({27}), define(snap_xml("test")),
         cli="define {f}", files={"f": snap_xml("test").encode()}),
    Case("dom-namespaced-root", "domain-xml", frozenset({27}),
         define("<domain xmlns='urn:evil' type='test'><name>ns</name></domain>"),
         cli="define {f}", files={"f": b"<domain xmlns='urn:evil' type='test'><name>ns</name></domain>"}),
    Case("dom-nul", "domain-xml", frozenset({27}), define(dom_xml("a\x00b")),
         cli="define {f}", files={"f": dom_xml("a\x00b").encode()}),
    Case("dom-empty", "domain-xml", frozenset({35}), define(""), cli="define {f}", files={"f": b""}),
    Case("dom-no-name", "domain-xml", frozenset({21}), define("<domain type='test'><memory>1</memory></domain>"),
         cli="define {f}", files={"f": b"<domain type='test'><memory>1</memory></domain>"}),
    Case("dom-uuid-collision", "domain-xml", frozenset({9}), define(dom_xml("other", f"<uuid>{UUID}</uuid>")),
         cli="define {f}", files={"f": dom_xml("other", f"<uuid>{UUID}</uuid>").encode()}),
    Case("dom-name-newline", "domain-xml", frozenset({35}), define(dom_xml("a\nb")),
         cli="define {f}", files={"f": dom_xml("a\nb").encode()}),
    Case("dom-name-slash", "domain-xml", frozenset({27}), define(dom_xml("../etc")),
         cli="define {f}", files={"f": dom_xml("../etc").encode()}),
    # ---- snapshot names (API: REDEFINE-mode XML, the path test_hostile_xml.py does not take; CLI: --name)
    *[Case(f"name-{label}", "names", frozenset(codes), create(redefine_xml(name), REDEFINE),
           cli=f"snapshot-create-as test --name {q(name)}")
      for label, name, codes in [
          ("slash", "a/b", {27}),
          ("dotdot", "..", {27}),
          ("dot", ".", {27}),
          ("leading-dot", ".hidden", {27}),
          ("tab", "a\tb", {27}),
          ("newline", "a\nb", {35}),
          ("escape-char", "a\x1b[31mred", {27, 35}),
          ("del-char", "a\x7fb", {27}),
          ("10000-chars", "n" * 10_000, {27}),
          ("256-utf8-bytes", "é" * 128, {27}),
          ("invalid-utf8", "bad\udcff\udcfe", {27, 35}),
          ("huge-argument", HUGE_ARG, {27}),
      ]],
    Case("name-nul", "names", frozenset({27}), create(redefine_xml("a\x00b"), REDEFINE),
         cli="snapshot-create test {f}", files={"f": snap_xml("a\x00b").encode()}),
    Case("name-nul-charref", "names", frozenset({35}), create(redefine_xml("a&#0;b").replace("&amp;", "&"), REDEFINE),
         cli="snapshot-create test {f}", files={"f": b"<domainsnapshot><name>a&#0;b</name></domainsnapshot>"}),
    Case("name-cdata-slash", "names", frozenset({27}),
         create("<domainsnapshot><name><![CDATA[../../etc]]></name></domainsnapshot>"),
         cli="snapshot-create test {f}",
         files={"f": b"<domainsnapshot><name><![CDATA[../../etc]]></name></domainsnapshot>"}),
    Case("lookup-traversal", "names", frozenset({72}), lambda c: c.dom.snapshotLookupByName("../s1"),
         cli="snapshot-info test ../s1"),
    # argv cannot carry NUL: the CLI side uses another control character
    Case("lookup-nul-or-control", "names", frozenset({72}), lambda c: c.dom.snapshotLookupByName("s1\x00"),
         cli="snapshot-info test " + q("s1\x01")),
    Case("delete-dotdot", "names", frozenset({72}), lambda c: c.dom.snapshotLookupByName("..").delete(),
         cli="snapshot-delete test .."),
    Case("revert-trailing-slash", "names", frozenset({72}),
         lambda c: c.dom.revertToSnapshot(virtsnap.virDomainSnapshot(c.dom, "s1/")),
         cli="snapshot-revert test s1/"),
    Case("delete-case-variant", "names", frozenset({72}), lambda c: c.dom.snapshotLookupByName("S1").delete(),
         cli="snapshot-delete test S1"),
    Case("domain-traversal", "names", frozenset({42}), lambda c: c.conn.lookupByName("../test"),
         cli="snapshot-list ../test"),
    Case("domain-invalid-utf8", "names", frozenset({42}), lambda c: c.conn.lookupByName("te\udcffst"),
         cli="snapshot-list te\udcffst"),
    # ---- paths in diskspec / memspec ------------------------------------------------------------------
    Case("disk-relative", "paths", frozenset({27}),
         create("<domainsnapshot><disks><disk name='vda' snapshot='external'><source file='rel/overlay'/>"
                "</disk></disks></domainsnapshot>"),
         cli="snapshot-create-as test --diskspec vda,snapshot=external,file=rel/overlay"),
    Case("disk-dotdot-relative", "paths", frozenset({27}),
         create("<domainsnapshot><disks><disk name='vda'><source file='../other-domain/disk'/>"
                "</disk></disks></domainsnapshot>"),
         cli="snapshot-create-as test --diskspec vda,file=../other-domain/disk"),
    Case("disk-dotdot-absolute", "paths", frozenset({27}),
         create("<domainsnapshot><memory snapshot='external' file='/tmp/vs-mem'/><disks>"
                "<disk name='vda' snapshot='external'><source file='/guest/../etc/passwd'/></disk>"
                "</disks></domainsnapshot>"),
         cli="snapshot-create-as test --memspec /tmp/vs-mem,snapshot=external "
             "--diskspec vda,snapshot=external,file=/guest/../etc/passwd"),
    Case("disk-nul", "paths", frozenset({27, 35}),
         create("<domainsnapshot><disks><disk name='vda'><source file='/tmp/a\x00b'/></disk></disks>"
                "</domainsnapshot>"),
         cli="snapshot-create test {f}",
         files={"f": b"<domainsnapshot><disks><disk name='vda'><source file='/tmp/a&#0;b'/></disk></disks>"
                     b"</domainsnapshot>"}),
    Case("disk-unknown-target", "paths", frozenset({67}),
         create("<domainsnapshot><disks><disk name='/etc/passwd'/></disks></domainsnapshot>"),
         cli="snapshot-create-as test --diskspec /etc/passwd"),
    Case("disk-twice", "paths", frozenset({67}),
         create("<domainsnapshot><disks><disk name='vda'/><disk name='/guest/diskimage1'/></disks></domainsnapshot>"),
         cli="snapshot-create-as test --diskspec vda --diskspec /guest/diskimage1"),
    Case("disk-attribute-injection", "paths", frozenset({35}),
         create("<domainsnapshot><disks><disk name='vda' snapshot='external'/>'/><x a='/></disks></domainsnapshot>"),
         cli="snapshot-create-as test --diskspec " + q("vda,snapshot=external'/><x a='")),
    Case("disk-bad-driver", "paths", frozenset({67}),
         create("<domainsnapshot><disks><disk name='vda' snapshot='external'><driver type='evil'/>"
                "<source file='/tmp/o'/></disk></disks></domainsnapshot>"),
         cli="snapshot-create-as test --diskspec vda,snapshot=external,driver=evil,file=/tmp/o"),
    Case("mem-relative", "paths", frozenset({27}),
         create("<domainsnapshot><memory snapshot='external' file='mem.save'/></domainsnapshot>"),
         cli="snapshot-create-as test --memspec file=mem.save,snapshot=external"),
    Case("mem-dotdot-relative", "paths", frozenset({27}),
         create("<domainsnapshot><memory snapshot='external' file='../../mem.save'/></domainsnapshot>"),
         cli="snapshot-create-as test --memspec file=../../mem.save,snapshot=external"),
    Case("mem-nul", "paths", frozenset({27, 35}),
         create("<domainsnapshot><memory snapshot='external' file='/tmp/m\x00x'/></domainsnapshot>"),
         cli="snapshot-create test {f}",
         files={"f": b"<domainsnapshot><memory snapshot='external' file='/tmp/m&#0;x'/></domainsnapshot>"}),
    Case("mem-internal-with-file", "paths", frozenset({27}),
         create("<domainsnapshot><memory snapshot='internal' file='/tmp/m'/></domainsnapshot>"),
         cli="snapshot-create-as test --memspec file=/tmp/m,snapshot=internal"),
    # ---- flags: every bit the driver does not accept, on every entry point; exclusive pairs ------------
    Case("flags-create", "flags", frozenset({8}),
         flag_probe=(lambda c, f: c.dom.snapshotCreateXML(snap_xml("probe"), f), 0x3CB),
         cli="snapshot-create test --no-metadata"),
    Case("flags-create-disk-only", "flags", frozenset({8}), create(snap_xml("d"), 0x10),
         cli="snapshot-create-as test d --disk-only"),
    Case("flags-create-reuse-external", "flags", frozenset({8}), create(snap_xml("r"), 0x20),
         cli="snapshot-create-as test r --reuse-external"),
    Case("flags-revert", "flags", frozenset({8}),
         flag_probe=(lambda c, f: c.dom.revertToSnapshot(c.snap("s2"), f), 0x7),
         cli="snapshot-revert test s2 --reset-nvram"),
    # 1 << 30: virtsnap's VIR_DOMAIN_SNAPSHOT_DELETE_FORCE (protected snapshots), accepted where marks exist
    Case("flags-delete", "flags", frozenset({8}), flag_probe=(lambda c, f: c.snap("s1").delete(f), 0x40000005),
         cli="snapshot-delete test s1 --metadata"),
    Case("flags-snapshot-xml", "flags", frozenset({8}), flag_probe=(lambda c, f: c.snap("s1").getXMLDesc(f), 0x1)),
    Case("flags-num", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.snapshotNum(f), 0x7FF)),
    Case("flags-list-names", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.snapshotListNames(f), 0x7FF)),
    Case("flags-list-all", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.listAllSnapshots(f), 0x7FF)),
    Case("flags-num-children", "flags", frozenset({8}),
         flag_probe=(lambda c, f: c.snap("s1").numChildren(f), 0x7FF)),
    Case("flags-list-children", "flags", frozenset({8}),
         flag_probe=(lambda c, f: c.snap("s1").listChildrenNames(f), 0x7FF)),
    Case("flags-list-all-children", "flags", frozenset({8}),
         flag_probe=(lambda c, f: c.snap("s1").listAllChildren(f), 0x7FF)),
    Case("flags-lookup", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.snapshotLookupByName("s1", f), 0)),
    Case("flags-has-current", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.hasCurrentSnapshot(f), 0)),
    Case("flags-current", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.snapshotCurrent(f), 0)),
    Case("flags-parent", "flags", frozenset({8}), flag_probe=(lambda c, f: c.snap("s2").getParent(f), 0)),
    Case("flags-is-current", "flags", frozenset({8}), flag_probe=(lambda c, f: c.snap("s1").isCurrent(f), 0)),
    Case("flags-has-metadata", "flags", frozenset({8}), flag_probe=(lambda c, f: c.snap("s1").hasMetadata(f), 0)),
    Case("flags-domain-xml", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.XMLDesc(f), 0xF)),
    Case("flags-domain-state", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.state(f), 0)),
    Case("flags-define", "flags", frozenset({8}),
         flag_probe=(lambda c, f: c.conn.defineXMLFlags(dom_xml("probe"), f), 0x1)),
    Case("flags-undefine", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.undefineFlags(f), 0x3)),
    Case("flags-start", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.createWithFlags(f), 0)),
    Case("flags-shutdown", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.shutdownFlags(f), 0)),
    Case("flags-destroy", "flags", frozenset({8}), flag_probe=(lambda c, f: c.dom.destroyFlags(f), 0x1)),
    Case("flags-list-domains", "flags", frozenset({8}), flag_probe=(lambda c, f: c.conn.listAllDomains(f), 0xFFFF)),
    Case("flags-open-auth", "flags", frozenset({8}),
         flag_probe=(lambda c, f: virtsnap.openAuth("test:///default", None, f).close(), 0x3)),
    Case("flags-revert-running-paused", "flags", frozenset({8}),
         lambda c: c.dom.revertToSnapshot(c.snap("s2"), 0x3),
         cli="snapshot-revert test s2 --running --paused", cli_expect="mutually exclusive"),
    Case("flags-delete-children-and-only", "flags", frozenset({8}), lambda c: c.snap("s1").delete(0x5),
         cli="snapshot-delete test s1 --children --children-only", cli_expect="mutually exclusive"),
    Case("flags-current-without-redefine", "flags", frozenset({8}), create(snap_xml("c"), CURRENT),
         cli="snapshot-create test --current", cli_expect="is required by flag"),
    Case("flags-redefine-no-metadata", "flags", frozenset({8}),
         create(redefine_xml("s1"), REDEFINE | 0x4),
         cli="snapshot-create test {f} --redefine --no-metadata", files={"f": redefine_xml("rn").encode()}),
    Case("flags-redefine-halt", "flags", frozenset({8}), create(redefine_xml("s1"), REDEFINE | 0x8),
         cli="snapshot-create test {f} --redefine --halt", files={"f": redefine_xml("s1").encode()}),
    # ---- URIs -----------------------------------------------------------------------------------------
    *[Case(f"uri-{label}", "uri", frozenset(codes), opener(uri), cli=["-c", uri, "list"], cli_kind="argv",
           secret=secret)
      for label, uri, codes, secret, bug in [
          ("unknown-scheme", "bogus://host/", {5}, None, None),
          ("qemu+ssh-refused", "qemu+ssh://127.0.0.1:1/system", {38}, None, None),
          ("test+tcp", "test+tcp://host/default", {5}, None, None),
          ("garbage", "garbage", {8}, None, None),
          ("only-colons", ":::::", {8}, None, None),
          ("control-char", "test:///def\x01ault", {8}, None, None),
          ("newline", "test:///default\nqemu:///system", {8}, None, None),
          ("invalid-utf8", "test:///default\udcff", {3, 8}, None, None),
          ("unknown-path", "test:///etc/passwd", {3}, None, None),
          ("huge", "test:///" + "x" * 100_000, {3, 8}, None, None),
          ("esx-password", "esx://root:s3cr3t-pw@127.0.0.1:1/?no_verify=1", {8}, "s3cr3t-pw", None),
          ("vpx-password", "vpx://root:s3cr3t-pw@127.0.0.1/dc/host", {8}, "s3cr3t-pw", None),
          ("esx-password-bad-port", "esx://root:s3cr3t-pw@127.0.0.1:99999/", {8}, "s3cr3t-pw",
           "bug: 'Unable to parse URI <uri>' echoes the password of an unparseable esx URI"),
          ("esx-password-bad-transport", "esx+ssh://root:s3cr3t-pw@127.0.0.1/", {5}, "s3cr3t-pw",
           "bug: 'no connection driver available for <uri>' echoes the password"),
      ]],
    # ---- CLI arguments --------------------------------------------------------------------------------
    Case("cli-unknown-option", "cli", frozenset({8}), lambda c: c.dom.snapshotNum(1 << 20),
         cli="snapshot-list test --bogus", cli_kind="parse", cli_expect="doesn't support option --bogus"),
    Case("cli-missing-argument", "cli", frozenset({8}),
         lambda c: c.dom.snapshotCreateXML(None),  # the API's "missing argument": NULL xmlDesc
         cli="snapshot-create-as test --name", cli_kind="parse", cli_expect="expected syntax"),
    Case("cli-unterminated-quote", "cli", frozenset({35}), create("<domainsnapshot><name>\"x</name>"),
         cli='snapshot-create-as test --name "unterminated', cli_kind="parse", cli_expect='missing "'),
    Case("cli-dangling-backslash", "cli", frozenset({72}), lambda c: c.dom.snapshotLookupByName("s1\\"),
         cli="snapshot-info test s1\\", cli_kind="parse", cli_expect="dangling"),
    Case("cli-option-repeated", "cli", frozenset({8}), lambda c: c.snap("s1").delete(0x1 | 0x4),
         cli="snapshot-delete test s1 --children --children", cli_kind="parse", cli_expect="already seen"),
    Case("cli-unexpected-data", "cli", frozenset({72}), lambda c: c.dom.snapshotLookupByName("s1 s2"),
         cli="snapshot-parent test s1 s2", cli_kind="parse", cli_expect="unexpected data"),
    Case("cli-unknown-command-invalid-utf8", "cli", frozenset({42}), lambda c: c.conn.lookupByName("\udcff"),
         cli="snap\udcffshot-list test", cli_kind="parse", cli_expect="unknown command"),
    Case("cli-option-name-invalid-utf8", "cli", frozenset({8}), lambda c: c.dom.snapshotNum(1 << 31),
         cli="snapshot-list test --na\udcffme", cli_kind="parse"),
    Case("cli-huge-unknown-option", "cli", frozenset({72}), lambda c: c.dom.snapshotLookupByName(HUGE_ARG),
         cli=["-c", "test:///default", "snapshot-list", "test", "--" + HUGE_ARG], cli_kind="argv"),
    Case("cli-double-dash-delete", "cli", frozenset({72}), lambda c: c.dom.snapshotLookupByName("--children").delete(),
         cli="snapshot-delete test -- --children"),
    Case("cli-double-dash-revert", "cli", frozenset({72}),
         lambda c: c.dom.revertToSnapshot(virtsnap.virDomainSnapshot(c.dom, "--current")),
         cli="snapshot-revert test -- --current"),
    Case("cli-double-dash-global", "cli", frozenset({8}), opener("--connect://x"),
         cli=["-c", "test:///default", "--", "--connect", "qemu:///system"], cli_kind="argv",
         cli_expect="unknown command"),
    Case("cli-empty-option-value", "cli", frozenset({72}), lambda c: c.dom.snapshotLookupByName(""),
         cli="snapshot-create-as test --name="),
    Case("cli-unknown-global-option", "cli", frozenset({5}), opener("bogus:///"), cli=["--bogus", "list"],
         cli_kind="argv", cli_expect="unsupported option"),
    Case("cli-global-missing-argument", "cli", frozenset({8}), opener("::"), cli=["-c"], cli_kind="argv",
         cli_expect="requires an argument"),
    Case("cli-bad-debug-level", "cli", frozenset({8}), opener("test:///default?\x7f\x01"),
         cli=["-d", "abc", "list"], cli_kind="argv", cli_expect="numeric argument"),
    Case("cli-domain-invalid-utf8-argv", "cli", frozenset({42}), lambda c: c.conn.lookupByName("\udcfe\udcff"),
         cli=["-c", "test:///default", "snapshot-list", "\udcfe\udcff"], cli_kind="argv"),
]

IDS = [c.id for c in CASES]
assert len(IDS) == len(set(IDS)), "duplicate case ids"


# -- state ----------------------------------------------------------------------------------------------
def api_state(conn: virtsnap.virConnect) -> list[Any]:
    """Everything a hostile call could have changed, as plain data."""
    out = []
    for dom in sorted(conn.listAllDomains(), key=lambda d: d.UUIDString()):
        snaps = []
        for snap in dom.listAllSnapshots(virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL):
            try:
                parent: str | None = snap.getParent().getName()
            except virtsnap.libvirtError:
                parent = None
            snaps.append((snap.getName(), parent, snap.isCurrent(), snap.listChildrenNames(),
                          snap.getXMLDesc(virtsnap.VIR_DOMAIN_SNAPSHOT_XML_SECURE)))
        current = dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None
        out.append((dom.name(), dom.UUIDString(), dom.ID(), dom.state(), dom.isPersistent(),
                    dom.XMLDesc(virtsnap.VIR_DOMAIN_XML_SECURE), dom.XMLDesc(virtsnap.VIR_DOMAIN_XML_INACTIVE),
                    current, snaps))
    return out


def api_setup(dom: virtsnap.virDomain) -> None:
    """s1 -> s2, and s1 -> s3 (current): a branch, a root with two children, a leaf that is not current."""
    dom.snapshotCreateXML(snap_xml("s1"))
    dom.snapshotCreateXML(snap_xml("s2"))
    dom.revertToSnapshot(dom.snapshotLookupByName("s1"))
    dom.snapshotCreateXML(snap_xml("s3"))


CLI_SETUP = ("snapshot-create-as test s1; snapshot-create-as test s2; snapshot-revert test s1; "
             "snapshot-create-as test s3")
CLI_DUMP = ("echo @@STATE@@; list --all; snapshot-list test --parent --topological; snapshot-current test --name; "
            "domstate test --reason; dumpxml test --security-info; snapshot-dumpxml test s1 --security-info; "
            "snapshot-dumpxml test s2 --security-info; snapshot-dumpxml test s3 --security-info")


@pytest.fixture(scope="module")
def case_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    base = tmp_path_factory.mktemp("hostile")
    paths: dict[str, dict[str, str]] = {}
    for case in CASES:
        paths[case.id] = {}
        for key, content in case.files.items():
            path = base / f"{case.id}-{key}.xml"
            path.write_bytes(content)
            paths[case.id][key] = str(path)
    return paths


# -- API ------------------------------------------------------------------------------------------------
def _check_api_error(case: Case, exc: virtsnap.libvirtError) -> None:
    message = exc.get_error_message()
    assert exc.get_error_code() in case.codes, (exc.get_error_code(), message[:300])
    assert not WRAPPED_PY_EXC.search(message), message[:300]
    assert not PASSWD_LEAK.search(message), "file contents leaked into an error message"
    if case.secret:
        assert case.secret not in message and case.secret not in repr(exc.err)


def _api_param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.api_bug)] if case.api_bug else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_api_param(c) for c in CASES if c.api or c.flag_probe])
def test_api(case: Case, case_files: dict[str, dict[str, str]]) -> None:
    with virtsnap.open("test:///default") as conn:
        dom = conn.lookupByName("test")
        api_setup(dom)
        ctx = Ctx(conn, dom, case_files[case.id])
        before = api_state(conn)
        if case.flag_probe is not None:
            call, accepted = case.flag_probe
            probes = [1 << bit for bit in range(32) if not accepted & (1 << bit)] + [-1, 1 << 32]
            for flags in probes:
                with pytest.raises(virtsnap.libvirtError) as info:
                    call(ctx, flags)
                _check_api_error(case, info.value)
                assert api_state(conn) == before, f"flags {flags:#x} changed the state"
        else:
            assert case.api is not None
            with pytest.raises(virtsnap.libvirtError) as info:
                case.api(ctx)
            _check_api_error(case, info.value)
            assert api_state(conn) == before


# -- CLI ------------------------------------------------------------------------------------------------
@dataclass
class CliRun:
    argv: list[bytes]
    rc: int
    stdout: str
    stderr: str


def _cli_argv(case: Case, files: dict[str, str]) -> list[str]:
    if case.cli_kind == "argv":
        assert isinstance(case.cli, list)
        return list(case.cli)
    assert isinstance(case.cli, str)
    hostile = case.cli.format(**{k: q(v) for k, v in files.items()}) if files else case.cli
    if case.cli_kind == "parse":
        chain = f"{CLI_SETUP}; {CLI_DUMP}; {hostile}"
    else:
        chain = f"{CLI_SETUP}; {CLI_DUMP}; {hostile}; {CLI_DUMP}; {hostile}"
    return ["-c", "test:///default", chain]


def _run_cli(case: Case, files: dict[str, str]) -> CliRun:
    argv = [os.fsencode(a) for a in _cli_argv(case, files)]  # surrogates become the original bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRSH_", "LIBVIRT_", "VIRTSNAP_"))}
    env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8", PYTHONIOENCODING="utf-8:surrogateescape")
    proc = subprocess.run([os.fsencode(sys.executable), b"-m", b"virtsnap", *argv], capture_output=True,
                          env=env, timeout=120, stdin=subprocess.DEVNULL)
    return CliRun(argv, proc.returncode, proc.stdout.decode("utf-8", "surrogateescape"),
                  proc.stderr.decode("utf-8", "surrogateescape"))


@pytest.fixture(scope="module")
def cli_runs(case_files: dict[str, dict[str, str]]) -> dict[str, CliRun]:
    """All CLI cases at once, a few processes at a time (each is a fresh interpreter)."""
    todo = [c for c in CASES if c.cli is not None]
    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2) * 2)) as pool:
        runs = pool.map(lambda c: (c.id, _run_cli(c, case_files[c.id])), todo)
        return dict(runs)


XML_DETAIL_LINE = re.compile(r"^error: \([a-z_]+\):\d+: ")


def check_stderr_lines(stderr: str) -> list[str]:
    """Every line is an `error: ` line, or one of the two context lines after a libvirt XML parser error
    ("(url):LINE: message", then the offending line and a caret line, as virsh prints them).
    Returns the error lines."""
    lines = stderr.split("\n")
    assert lines[-1] == "", f"stderr does not end with a newline: {stderr[-200:]!r}"
    errors: list[str] = []
    allowance = 0
    for line in lines[:-1]:
        if line.startswith("error: "):
            errors.append(line)
            allowance = 2 if XML_DETAIL_LINE.match(line) else 0
        elif allowance:
            allowance -= 1
        else:
            raise AssertionError(f"stderr line is not an error line: {line[:200]!r}\n--- stderr:\n{stderr[:2000]}")
    return errors


def _cli_param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.cli_bug)] if case.cli_bug else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_cli_param(c) for c in CASES if c.cli is not None])
def test_cli(case: Case, cli_runs: dict[str, CliRun]) -> None:
    run = cli_runs[case.id]
    where = f"argv={[a[:200] for a in run.argv]!r}\nstdout={run.stdout[-1500:]}\nstderr={run.stderr[:1500]}"
    assert run.rc == 1, where
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, where
    assert not WRAPPED_PY_EXC.search(run.stderr), where
    assert not PASSWD_LEAK.search(run.stderr + run.stdout), "file contents leaked"
    if case.secret:
        assert case.secret not in run.stderr and case.secret not in run.stdout, where
    errors = check_stderr_lines(run.stderr)
    assert errors, where
    if case.cli_expect:
        assert case.cli_expect in run.stderr, where
    if case.cli_kind in ("parse", "argv"):
        # argv-mode commands may print the blank line that follows every command; nothing else
        assert run.stdout.strip() == "" if case.cli_kind == "argv" else run.stdout == "", \
            f"something ran although the command line was refused\n{where}"
        assert len(errors) <= 2, where
        return
    dumps = run.stdout.split("@@STATE@@")
    assert len(dumps) == 3, where  # before the first hostile command, after it, and the setup's (empty) output
    assert dumps[1] == dumps[2], f"the hostile command changed the state\n{where}"
    assert dumps[1].count("\n s1 ") == 1 and "\ns3\n" in dumps[1], where  # the setup really ran
    half = len(errors) // 2
    assert len(errors) % 2 == 0 and errors[:half] == errors[half:], f"the two runs failed differently\n{where}"


# -- names that must be allowed, and distinct ---------------------------------------------------------
# case variants, a Cyrillic a, fullwidth letters, NFC and NFD 'é', a zero-width space, a leading space
DISTINCT_NAMES = ["Snap", "snap", "SNAP", "sNaP", "sn\u0430p", "\uff53\uff4e\uff41\uff50", "caf\u00e9", "cafe\u0301",
                  "sn\u200bap", " snap", "a..b", "-x", "n" * 255]


def test_case_and_lookalike_names_are_allowed_and_distinct_api() -> None:
    with virtsnap.open("test:///default") as conn:
        dom = conn.lookupByName("test")
        for name in DISTINCT_NAMES:
            assert dom.snapshotCreateXML(snap_xml(name)).getName() == name
        assert sorted(dom.snapshotListNames()) == sorted(DISTINCT_NAMES)
        for name in DISTINCT_NAMES:
            snap = dom.snapshotLookupByName(name)
            assert snap.getName() == name and f"<name>{name}</name>" in snap.getXMLDesc()
        dom.snapshotLookupByName("snap").delete()
        assert sorted(dom.snapshotListNames()) == sorted(n for n in DISTINCT_NAMES if n != "snap")
        with pytest.raises(virtsnap.libvirtError) as info:
            dom.snapshotLookupByName("snap")
        assert info.value.get_error_code() == 72


def test_case_and_lookalike_names_are_allowed_and_distinct_cli() -> None:
    chain = "; ".join(f"snapshot-create-as test --name {q(n)}" for n in DISTINCT_NAMES)
    chain += "; snapshot-delete test snap; echo @@; snapshot-list test --name"
    env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8")
    proc = subprocess.run([sys.executable, "-m", "virtsnap", "-q", "-c", "test:///default", chain],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    listed = [line for line in proc.stdout.split("@@", 1)[1].split("\n") if line]
    assert sorted(listed) == sorted(n for n in DISTINCT_NAMES if n != "snap")


def test_encoding_declaration_on_str_never_garbles_text() -> None:
    """A str is already decoded: its declaration may be refused, but never applied to the UTF-8 re-encoding."""
    xml = "<?xml version='1.0' encoding='ISO-8859-1'?><domainsnapshot><name>é</name></domainsnapshot>"
    with virtsnap.open("test:///default") as conn:
        dom = conn.lookupByName("test")
        try:
            name = dom.snapshotCreateXML(xml).getName()
        except virtsnap.libvirtError as exc:
            assert exc.get_error_code() in (27, 35)
            assert dom.snapshotNum() == 0
        else:
            assert name == "é"


# -- the count ------------------------------------------------------------------------------------------
class _Summary:
    def __init__(self) -> None:
        both = [c for c in CASES if (c.api or c.flag_probe) and c.cli]
        groups = Counter(c.group for c in CASES)
        self.line = (f"hostile-input table: {len(CASES)} cases ({len(both)} through API and CLI, "
                     f"{sum(1 for c in CASES if (c.api or c.flag_probe) and not c.cli)} API only, "
                     f"{sum(1 for c in CASES if c.cli and not (c.api or c.flag_probe))} CLI only); "
                     + ", ".join(f"{g} {n}" for g, n in groups.items())
                     + f"; known bugs (strict xfail): {sum(1 for c in CASES if c.api_bug)} API, "
                       f"{sum(1 for c in CASES if c.cli_bug)} CLI")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_line(self.line)


def test_table_summary(request: pytest.FixtureRequest) -> None:
    """At least 50 cases through both doors; the count is printed at the end of the run."""
    summary = _Summary()
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("hostile-table-summary"):
        plugins.register(summary, "hostile-table-summary")
    both = [c for c in CASES if (c.api or c.flag_probe) and c.cli]
    assert len(both) >= 50, summary.line

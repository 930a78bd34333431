"""Namespaced XML (a domain's <metadata>, e.g. virt-install's libosinfo element) survives parsing, formatting,
storing and reading back: prefixes and xmlns declarations are kept, through parse() and parse_trusted() alike.

libvirt keeps <metadata> as a libxml2 node and prints it with xmlNodeDump (double quotes, libxml2's escapes);
the byte-for-byte comparison with libvirt is in test_snapshot_xml_vectors.py (define/ and redefine/ vectors).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import virtsnap
from virtsnap.conf.domain_xml import DomainDef
from virtsnap.conf.xmlutil import Node, format_node, parse, parse_trusted

OSINFO = ('<libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">'
          '<libosinfo:os id="http://debian.org/debian/12"/></libosinfo:libosinfo>')
# What libvirt prints for it inside a <domain> (indent 2) ...
OSINFO_PRINTED = """  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
  </metadata>
"""
# ... and inside the <domain> of a <domainsnapshot> (indent 4).
OSINFO_IN_SNAPSHOT = "".join("  " + line + "\n" for line in OSINFO_PRINTED.splitlines())
QEMU_CMDLINE = ("<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
                "<qemu:arg value='-no-hpet'/></qemu:commandline>")
ERR = virtsnap.ErrorDomain.DOMAIN


def _both(text: str, root: str = "domain") -> Node:
    """parse() and parse_trusted() (its expat path, without falling back) give the same tree."""
    from unittest import mock

    from virtsnap.conf import xmlutil

    slow = parse(text, root, "u", ERR)
    with mock.patch.object(xmlutil, "parse", side_effect=AssertionError("fell back to parse()")):
        fast = xmlutil.parse_trusted(text, root, "u", ERR)
    assert fast == slow
    return slow


def test_prefixes_and_declarations_are_kept() -> None:
    node = _both(f"<domain type='kvm'><name>n</name><metadata>{OSINFO}</metadata>{QEMU_CMDLINE}</domain>")
    osinfo = node.children[1].children[0]
    assert osinfo.tag == "libosinfo:libosinfo"
    assert osinfo.attrs == {"xmlns:libosinfo": "http://libosinfo.org/xmlns/libvirt/domain/1.0"}
    assert osinfo.children == [Node("libosinfo:os", {"id": "http://debian.org/debian/12"})]
    cmdline = node.children[2]
    assert cmdline.tag == "qemu:commandline"
    assert cmdline.attrs == {"xmlns:qemu": "http://libvirt.org/schemas/domain/qemu/1.0"}
    assert cmdline.children == [Node("qemu:arg", {"value": "-no-hpet"})]


def test_namespaced_attributes_default_namespaces_and_xml_prefix() -> None:
    text = ("<domain><metadata><a:x xmlns:a='urn:a' xmlns:b='urn:b' b:k='1' a:j='2' k='3'>"
            "<y xmlns='urn:d' xml:lang='en'><z xmlns=''/></y></a:x></metadata></domain>")
    x = _both(text).children[0].children[0]
    # Declarations first, in document order, then the attributes, as libxml2 keeps and prints them.
    assert list(x.attrs.items()) == [("xmlns:a", "urn:a"), ("xmlns:b", "urn:b"), ("b:k", "1"), ("a:j", "2"),
                                     ("k", "3")]
    assert x.children == [Node("y", {"xmlns": "urn:d", "xml:lang": "en"}, None, [Node("z", {"xmlns": ""})])]


def test_two_prefixes_for_one_namespace_keep_the_one_written() -> None:
    text = "<domain><m:x xmlns:m='urn:m' xmlns:n='urn:m' n:a='1'><n:y m:b='2'/></m:x></domain>"
    x = _both(text).children[0]
    assert list(x.attrs) == ["xmlns:m", "xmlns:n", "n:a"]
    assert x.children == [Node("n:y", {"m:b": "2"})]


def test_redundant_declaration_is_kept() -> None:
    x = _both("<domain><m:x xmlns:m='urn:m'><m:y xmlns:m='urn:m'/></m:x></domain>").children[0]
    assert x.children == [Node("m:y", {"xmlns:m": "urn:m"})]


@pytest.mark.parametrize("text", [
    f"<domain type='kvm'><name>n</name><metadata>{OSINFO}</metadata>{QEMU_CMDLINE}</domain>",
    "<domain><metadata><a:x xmlns:a='urn:a' a:k='&lt;&amp;&quot;&apos;'>t&amp;&lt;u&gt;</a:x>"
    "<y xmlns='urn:d'><z xmlns='' xml:lang='en'/></y></metadata></domain>",
])
def test_format_parses_back_to_the_same_tree(text: str) -> None:
    node = _both(text)
    printed = format_node(node)
    assert _both(printed) == node
    assert parse_trusted(printed, "domain", "u", ERR) == node


def test_domain_metadata_prints_as_libvirt_does() -> None:
    defn = DomainDef.parse(f"<domain type='kvm'><name>n</name><metadata>{OSINFO}</metadata></domain>")
    printed = defn.format()
    assert OSINFO_PRINTED in printed
    assert DomainDef.parse(printed).format() == printed
    assert DomainDef.parse(printed, trusted=True).format() == printed


def test_metadata_children_without_namespace_or_repeating_one_are_dropped_as_libvirt_does() -> None:
    """virXMLNodeSanitizeNamespaces: a child of <metadata> needs a namespace; the first one per namespace wins.
    A prefix declared outside <metadata> does not count (libvirt copies the element out of the document)."""
    defn = DomainDef.parse("<domain type='kvm' xmlns:r='urn:r'><name>n</name><metadata>text<plain/>"
                           "<a:x xmlns:a='urn:a'/><b:x xmlns:b='urn:a'/><r:x/><d xmlns='urn:d'/></metadata></domain>")
    metadata = defn.node.find("metadata")
    assert metadata is not None
    assert [c.tag for c in metadata.children] == ["a:x", "d"]


def test_snapshot_parts_keep_the_declarations_of_domainsnapshot_they_use() -> None:
    """A snapshot's <domain> and <cookie> are kept apart from the <domainsnapshot> they came in: a prefix
    declared on it and used inside them goes along, or their XML would not read back."""
    from virtsnap.conf.snapshot_xml import ParseMode, format_snapshot, parse_snapshot

    text = ("<domainsnapshot xmlns:l='urn:l' xmlns:unused='urn:u'><name>s</name><state>running</state>"
            "<creationTime>1</creationTime><domain type='kvm'><name>d</name>"
            "<uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid><metadata><m:x xmlns:m='urn:m'><l:y l:a='1'/></m:x>"
            "</metadata></domain><cookie><l:cpu/></cookie></domainsnapshot>")
    printed = format_snapshot(parse_snapshot(text, ParseMode.REDEFINE))
    assert "  <domain type='kvm' xmlns:l='urn:l'>\n" in printed
    assert "  <cookie xmlns:l='urn:l'>\n    <l:cpu/>\n  </cookie>\n" in printed
    assert "unused" not in printed
    again = parse_snapshot(printed, ParseMode.REDEFINE)
    assert format_snapshot(again) == printed
    assert format_snapshot(parse_snapshot(printed, ParseMode.REDEFINE, trusted=True)) == printed


def test_test_driver_stores_and_prints_qemu_commandline_verbatim() -> None:
    """The test driver keeps the whole domain, so <qemu:commandline> stays, and its output defines again."""
    with virtsnap.open("test:///default") as conn:
        xml = conn.lookupByName("test").XMLDesc(0)
        xml = (xml.replace("<name>test</name>", "<name>cmdline</name>")
                  .replace("6695eb01-f6a4-8304-79aa-97f2502e193f", "6695eb01-f6a4-8304-79aa-97f2502e1010")
                  .replace("</devices>\n", "</devices>\n" + QEMU_CMDLINE))
        dom = conn.defineXML(xml)
        try:
            printed = dom.XMLDesc(0)
            assert ("  <qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
                    "    <qemu:arg value='-no-hpet'/>\n  </qemu:commandline>\n") in printed
            assert conn.defineXML(printed).XMLDesc(0) == printed
        finally:
            dom.undefine()


# -- the QEMU driver, end to end without a guest ------------------------------------------------------------
@pytest.fixture
def qemu_session(monkeypatch: pytest.MonkeyPatch):
    work = Path(tempfile.mkdtemp(prefix="vsns-", dir="/tmp"))
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(work / "state"))
    disk = work / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    yield work, disk
    shutil.rmtree(work, ignore_errors=True)


def _qemu_domain(disk: Path, extra: str = "") -> str:
    return (f"<domain type='qemu'><name>osinfo</name><metadata>{OSINFO}</metadata>{extra}"
            f"<memory unit='MiB'>64</memory><os><type>hvm</type></os><devices><disk type='file' device='disk'>"
            f"<driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
            f"</devices></domain>")


def test_qemu_driver_keeps_metadata_through_define_snapshot_and_a_new_connection(qemu_session) -> None:
    _work, disk = qemu_session
    with virtsnap.open("qemu:///session") as conn:
        dom = conn.defineXML(_qemu_domain(disk))
        assert OSINFO_PRINTED in dom.XMLDesc(0)
        snap = dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
        assert OSINFO_IN_SNAPSHOT in snap.getXMLDesc()
    with virtsnap.open("qemu:///session") as conn:  # read back from the store by a new connection
        dom = conn.lookupByName("osinfo")
        xml = dom.XMLDesc(0)
        assert OSINFO_PRINTED in xml
        assert OSINFO_IN_SNAPSHOT in dom.snapshotLookupByName("s1").getXMLDesc()
        assert conn.defineXML(xml).XMLDesc(0) == xml  # the printed definition defines again, unchanged
        assert dom.snapshotCurrent().getName() == "s1"


def test_qemu_driver_refuses_qemu_commandline_by_name(qemu_session) -> None:
    """The QEMU driver's subset has no <qemu:commandline>: refused naming it, never stored unreadable."""
    _work, disk = qemu_session
    with virtsnap.open("qemu:///session") as conn:
        with pytest.raises(virtsnap.libvirtError) as exc:
            conn.defineXML(_qemu_domain(disk, QEMU_CMDLINE))
        assert exc.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
        assert "qemu:commandline" in exc.value.get_error_message()
        assert conn.listDefinedDomains() == []


def test_qemu_driver_accepts_a_prefix_declaration_on_domain_and_keeps_it(qemu_session) -> None:
    """A namespace declaration configures nothing: accepted where the driver checks attributes, and kept."""
    _work, disk = qemu_session
    declared = "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
    with virtsnap.open("qemu:///session") as conn:
        xml = conn.defineXML(_qemu_domain(disk).replace("<domain type='qemu'>", declared)).XMLDesc(0)
        assert xml.startswith(declared + "\n") and OSINFO_PRINTED in xml
    with virtsnap.open("qemu:///session") as conn:
        assert conn.lookupByName("osinfo").XMLDesc(0) == xml
        with pytest.raises(virtsnap.libvirtError) as exc:  # a default namespace is another vocabulary
            conn.defineXML(_qemu_domain(disk).replace("<os>", "<os xmlns=''>"))
        assert exc.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED

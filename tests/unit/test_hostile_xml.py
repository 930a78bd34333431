"""Hostile and malformed snapshot XML: a libvirt-style error, no expansion, nothing changed."""

import pytest

import virtsnap

LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<domainsnapshot><name>&lol3;</name></domainsnapshot>"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<domainsnapshot><name>x</name><description>&xxe;</description></domainsnapshot>"""
PARAM_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>
<domainsnapshot><name>x</name></domainsnapshot>"""
DEEP = "<domainsnapshot><name>deep</name>" + "<a>" * 5000 + "</a>" * 5000 + "</domainsnapshot>"
HUGE = "<domainsnapshot><name>big</name><description>" + "x" * (11 * 1024 * 1024) + "</description></domainsnapshot>"

MANY_ATTRS = "<domainsnapshot " + " ".join(f"a{i}='x'" for i in range(20000)) + "><name>m</name></domainsnapshot>"
MANY_ELEMENTS = "<domainsnapshot><name>m</name>" + "<x/>" * 1_000_000 + "</domainsnapshot>"

CASES = {
    "many-attributes": (MANY_ATTRS, {27}),  # lxml's attribute access is quadratic: refused before it
    "a-million-elements": (MANY_ELEMENTS, {27}),
    "billion-laughs": (LAUGHS, {27, 35}),
    "external-entity": (XXE, {27, 35}),
    "parameter-entity": (PARAM_ENTITY, {27, 35}),
    "deep-nesting": (DEEP, {27, 35}),
    "huge": (HUGE, {27}),
    "invalid-utf8": (b"<domainsnapshot><name>\xff\xfe</name></domainsnapshot>", {27, 35}),
    "nul": ("<domainsnapshot><name>a\x00b</name></domainsnapshot>", {27}),
    "slash": ("<domainsnapshot><name>a/b</name></domainsnapshot>", {27}),
    "dotdot": ("<domainsnapshot><name>..</name></domainsnapshot>", {27}),
    "leading-dot": ("<domainsnapshot><name>.hidden</name></domainsnapshot>", {27}),
    "control-char": ("<domainsnapshot><name>a\tb</name></domainsnapshot>", {27}),
    "newline": ("<domainsnapshot><name>a&#10;b</name></domainsnapshot>", {35}),
    "too-long": ("<domainsnapshot><name>" + "n" * 10000 + "</name></domainsnapshot>", {27}),
    "not-xml": ("this is not xml", {35}),
    "empty": ("", {35}),
    "wrong-root": ("<domain type='test'><name>x</name></domain>", {27}),
}


@pytest.fixture
def dom():
    with virtsnap.open("test:///default") as conn:
        yield conn.lookupByName("test")


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_snapshot_xml_is_refused_and_changes_nothing(dom, case):
    xml, codes = CASES[case]
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8", errors="surrogateescape")
    before = (dom.snapshotListNames(), dom.state(), dom.XMLDesc())
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotCreateXML(xml)
    assert info.value.get_error_code() in codes, info.value.get_error_message()[:200]
    assert "root:" not in info.value.get_error_message()  # /etc/passwd never leaks into a message
    assert (dom.snapshotListNames(), dom.state(), dom.XMLDesc()) == before


def test_entity_bomb_is_not_expanded_in_time(dom):
    # The parser must refuse before expansion; this would take minutes and gigabytes otherwise.
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotCreateXML(LAUGHS.replace("&lol3;", "&lol3;" * 1000))
    assert info.value.get_error_code() == virtsnap.VIR_ERR_XML_DETAIL

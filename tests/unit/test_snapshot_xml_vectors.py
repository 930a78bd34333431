"""Golden <domainsnapshot> vectors: virtsnap's output must equal what libvirt 9.0 printed for them.

Expected files were written by tests/data/snapshot_xml/make_expected.py from libvirt itself; this test
never rewrites them. Create-mode vectors run on a fresh test:///default with the clock fixed. Define vectors
are <domain> documents (namespaced <metadata>) defined on test:///default and printed back.
"""

from pathlib import Path
from unittest import mock

import pytest

import virtsnap

DATA = Path(__file__).resolve().parent.parent / "data" / "snapshot_xml"
FIXED_CLOCK = 1700000000


def _inputs(kind):
    return sorted(p for p in (DATA / kind).glob("*.xml") if not p.name.endswith(".out.xml"))


def _expected(path):
    out, err = path.with_suffix(".out.xml"), path.with_suffix(".err")
    if out.exists():
        return ("ok", out.read_text())
    code, domain, message = err.read_text().rstrip("\n").split(" ", 2)
    return ("err", (int(code), int(domain), message))


def _run(fn):
    try:
        return ("ok", fn())
    except virtsnap.libvirtError as exc:
        return ("err", (exc.get_error_code(), exc.get_error_domain(), exc.get_error_message()))


@pytest.mark.parametrize("path", _inputs("create"), ids=lambda p: p.stem)
def test_create_vector(path):
    with virtsnap.open("test:///default") as conn, mock.patch("time.time", return_value=FIXED_CLOCK + 0.25):
        dom = conn.lookupByName("test")
        got = _run(lambda: dom.snapshotCreateXML(path.read_text()).getXMLDesc())
    assert got == _expected(path)


def test_redefine_vectors_round_trip():
    with virtsnap.open("test:///default") as conn:
        dom = conn.lookupByName("test")
        for path in _inputs("redefine"):
            got = _run(lambda: dom.snapshotCreateXML(path.read_text(),
                                                     virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE).getXMLDesc())
            assert got == _expected(path), path.name
            if got[0] == "ok":
                assert got[1] == path.read_text(), f"{path.name} does not print back as it was defined"


def _define_and_print(conn, xml):
    dom = conn.defineXML(xml)
    try:
        return dom.XMLDesc(0)
    finally:
        dom.undefine()


@pytest.mark.parametrize("path", _inputs("define"), ids=lambda p: p.stem)
def test_define_vector(path):
    with virtsnap.open("test:///default") as conn:
        got = _run(lambda: _define_and_print(conn, path.read_text()))
        assert got == _expected(path)
        if got[0] == "ok":  # what libvirt prints defines again, unchanged
            assert _run(lambda: _define_and_print(conn, got[1])) == got

#!/usr/bin/python3
"""Regenerate the expected outputs of the snapshot XML vectors from libvirt 9.0 itself.

Run explicitly (never by the tests): /usr/bin/python3 tests/data/snapshot_xml/make_expected.py
It needs Debian's python3-libvirt. Create-mode vectors: create/NAME.xml is created on a fresh
test:///default; the XML libvirt prints, with creationTime fixed to 1700000000, goes to NAME.out.xml,
or the error to NAME.err ("code domain message"). Redefine vectors: redefine/NAME.xml (files are
applied in name order on one connection) must print back byte for byte; NAME.out.xml records it.
Define vectors: define/NAME.xml is defined on test:///default; the XML libvirt prints for the new domain goes
to NAME.out.xml, or the error to NAME.err.
"""

import re
import sys
from pathlib import Path

import libvirt

HERE = Path(__file__).resolve().parent
FIXED = "<creationTime>1700000000</creationTime>"

libvirt.registerErrorHandler(lambda *_: None, None)


def record(path, fn):
    try:
        out = fn()
        path.with_suffix(".out.xml").write_text(re.sub(r"<creationTime>\d+</creationTime>", FIXED, out))
        path.with_suffix(".err").unlink(missing_ok=True)
    except libvirt.libvirtError as err:
        path.with_suffix(".err").write_text(
            f"{err.get_error_code()} {err.get_error_domain()} {err.get_error_message()}\n")
        path.with_suffix(".out.xml").unlink(missing_ok=True)


def main():
    for path in sorted((HERE / "create").glob("*.xml")):
        if path.name.endswith(".out.xml"):
            continue
        conn = libvirt.open("test:///default")
        dom = conn.lookupByName("test")
        record(path, lambda: dom.snapshotCreateXML(path.read_text(), 0).getXMLDesc())
        # test:///default outlives close() while handles exist: empty it so each vector starts fresh.
        for root in dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS):
            root.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
        conn.close()
    conn = libvirt.open("test:///default")
    dom = conn.lookupByName("test")
    for path in sorted((HERE / "redefine").glob("*.xml")):
        if path.name.endswith(".out.xml"):
            continue
        record(path, lambda: dom.snapshotCreateXML(path.read_text(), libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
               .getXMLDesc())
    conn.close()
    for path in sorted((HERE / "define").glob("*.xml")):
        if path.name.endswith(".out.xml"):
            continue
        conn = libvirt.open("test:///default")
        record(path, lambda: conn.defineXML(path.read_text()).XMLDesc(0))
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE):
            dom.undefine()
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

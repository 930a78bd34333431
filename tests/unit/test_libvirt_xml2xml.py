"""libvirt 9.0's snapshot XML vectors (Debian's source package, see tests/data/libvirt_xml2xml/README.md) through
virtsnap, with the modes and flags of libvirt's harness (qemudomainsnapshotxml2xmltest.c): every run equal."""

import re
import sys
from pathlib import Path

import pytest

from virtsnap.conf.snapshot_xml import ParseMode, SnapshotState, format_snapshot, parse_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from libvirt_source import libvirt_source

INTERNAL, REDEFINE, RUNNING = 1, 2, 4
FLAG_NAMES = {"TEST_INTERNAL": INTERNAL, "TEST_REDEFINE": REDEFINE, "TEST_RUNNING": RUNNING}
U1 = "9d37b878-a7cc-9f9a-b78f-49b3abad25a8"
U2 = "c7a5fdbd-edaf-9455-926a-d65c16db1809"

# The harness's runs, in its order: (input dir, output dir, name, uuid, mocked creation time, flags).
# test_harness_is_libvirts checks this list against the harness's source.
HARNESS = [
    ("out", "out", "all_parameters", U1, 0, INTERNAL | REDEFINE),
    ("out", "out", "disk_snapshot_redefine", U2, 0, INTERNAL | REDEFINE),
    ("out", "out", "full_domain", U2, 0, INTERNAL | REDEFINE),
    ("out", "out", "noparent_nodescription_noactive", None, 0, REDEFINE),
    ("out", "out", "noparent_nodescription", None, 0, INTERNAL | REDEFINE),
    ("out", "out", "noparent", U1, 0, REDEFINE),
    ("out", "out", "metadata", U2, 0, REDEFINE),
    ("out", "out", "external_vm_redefine", U2, 0, REDEFINE),
    ("out", "out", "memory-snapshot-inactivedomain", "14beef2c-8cae-4ea8-bf55-e48fe0cd4b73", 0, REDEFINE),
    ("in", "out", "empty", U1, 1386166249, 0),
    ("in", "out", "noparent", U1, 1272917631, RUNNING),
    ("in", "out", "external_vm", None, 1555419243, 0),
    ("in", "out", "disk_snapshot", None, 1555419243, 0),
    ("in", "out", "disk_driver_name_null", None, 1555419243, 0),
    ("in", "out", "disk-seclabel", U1, 581484660, 0),
    ("in", "in", "name_and_description", None, 0, 0),
    ("in", "in", "description_only", None, 0, 0),
    ("in", "in", "name_only", None, 0, 0),
    ("in", "out", "qcow2-metadata-cache", U1, 1386166249, 0),
]


@pytest.fixture(scope="module")
def tests_dir() -> Path:
    return libvirt_source() / "tests"


def vector(tests_dir: Path, kind: str, name: str) -> Path:
    return tests_dir / f"qemudomainsnapshotxml2xml{kind}" / f"{name}.xml"


def harness(text, uuid, when, flags):
    """testCompareXMLToXMLFiles: parse (REDEFINE / INTERNAL), post-parse clock, RUNNING, format SECURE."""
    mode = ParseMode.REDEFINE if flags & REDEFINE else ParseMode.CREATE
    defn = parse_snapshot(text, mode, now=when or 1)
    if not flags & REDEFINE and not when:
        # testSnapshotPostParse with no mocked time leaves the name and creation time unset
        defn.creation_time = 0
        if re.search(r"<name>[^<]", text) is None:
            defn.name = ""
    current = bool(flags & INTERNAL) and re.search(r"<active>\s*1\s*</active>", text) is not None
    if flags & RUNNING:
        assert defn.state == SnapshotState.NOSTATE
        defn.state = SnapshotState.RUNNING
    return format_snapshot(defn, uuid, secure=True, internal_current=current if flags & INTERNAL else None)


@pytest.mark.parametrize("case", HARNESS, ids=lambda c: f"{c[0]}->{c[1]}-{c[2]}")
def test_libvirt_vector(case, tests_dir):
    src, dst, name, uuid, when, flags = case
    expected = vector(tests_dir, dst, name).read_text()
    assert harness(vector(tests_dir, src, name).read_text(), uuid, when, flags) == expected


def _flags(text: str) -> int:
    return sum(FLAG_NAMES[w.strip()] for w in text.split("|") if w.strip() != "0")


def test_harness_is_libvirts(tests_dir):
    """HARNESS is every DO_TEST_* run of libvirt 9.0's qemudomainsnapshotxml2xmltest.c, with its arguments."""
    source = (tests_dir / "qemudomainsnapshotxml2xmltest.c").read_text()
    body = source[source.index('g_setenv("PATH"'):]
    runs = []
    for macro, args in re.findall(r"DO_TEST_(IN|OUT|INOUT)\((.*?)\);", body, re.S):
        parts = [a.strip() for a in re.split(r",(?![^\"]*\"(?:[^\"]*\"[^\"]*\")*[^\"]*$)", args)]
        name, uuid = parts[0].strip('"'), None if parts[1] == "NULL" else parts[1].strip('"')
        if macro == "IN":
            runs.append(("in", "in", name, uuid, 0, 0))
        elif macro == "OUT":
            runs.append(("out", "out", name, uuid, 0, _flags(parts[2]) | REDEFINE))
        else:
            runs.append(("in", "out", name, uuid, int(parts[2]), _flags(parts[3])))
    assert runs == HARNESS
    assert len(runs) == 19

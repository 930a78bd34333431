"""snapshot-edit scenarios: the editor is a script named by $EDITOR (or $VISUAL), compared with virsh.

Uses the chain harness of test_virsh_snapshot.py; chains live here because each needs its own
environment. Editor failures are left out: their messages carry virsh's random temporary file name.
"""

import os
import stat

import pytest
import test_virsh_snapshot as harness

EDITORS = {
    # sed scripts keep the file otherwise byte-identical
    "describe": "sed -i 's|<description>.*</description>|<description>edited</description>|' \"$1\"",
    "rename": "sed -i 's|<name>a</name>|<name>z</name>|' \"$1\"",
    "noop": "exit 0",
}

CASES = {
    "edit-description": ("describe", """
snapshot-create-as test a --description before
snapshot-create-as test b
snapshot-edit test a
snapshot-dumpxml test a --xpath //description
snapshot-current test --name
snapshot-edit test a --current
snapshot-current test --name
snapshot-edit test --current
snapshot-edit test --current --snapshotname b
snapshot-edit test nosuch
snapshot-edit test
snapshot-edit nosuchdomain a
"""),
    "clone-and-rename": ("rename", """
snapshot-create-as test a
snapshot-edit test a --clone
snapshot-list test --parent --name
snapshot-edit test a --rename --clone
snapshot-delete test z
snapshot-edit test a --rename
snapshot-list test --name
snapshot-delete test z
snapshot-edit test a
snapshot-list test --name
"""),
    "unchanged": ("noop", """
snapshot-create-as test a
snapshot-create-as test b
snapshot-edit test a
snapshot-edit test --current
snapshot-edit test a --current
snapshot-current test --name
"""),
}


def _editor(tmp_path, body):
    path = tmp_path / "editor.sh"
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize("use_visual", [False, True], ids=["EDITOR", "VISUAL"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("quiet", [False, True], ids=["normal", "quiet"])
def test_snapshot_edit_matches_virsh(case, use_visual, quiet, tmp_path, monkeypatch, reference_ready):
    editor_name, chain = CASES[case]
    editor = _editor(tmp_path, EDITORS[editor_name])
    monkeypatch.delenv("VISUAL", raising=False)
    if use_visual:
        monkeypatch.setenv("EDITOR", "false")  # VISUAL wins over EDITOR
        monkeypatch.setenv("VISUAL", editor)
    else:
        monkeypatch.setenv("EDITOR", editor)
    lines = [line for line in chain.strip().splitlines() if line.strip()]
    runs = [(["-q"] if quiet else [], lines, {})]
    expected = harness.run_chain(harness.reference_command(), runs)
    actual = harness.run_chain(harness.candidate_command(), runs)
    for index, ((options, run_lines, _), exp, act) in enumerate(zip(runs, expected, actual, strict=False)):
        if exp != act:
            pytest.fail(harness.describe(index, options, run_lines, exp, act), pytrace=False)


@pytest.fixture(scope="module")
def reference_ready():
    if not any(os.access(os.path.join(d, "virsh"), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.fail("virsh not found: `make setup` installs Debian's libvirt-clients")

"""--json, virtsnap's machine-readable output of list, dominfo, snapshot-list, snapshot-info and
snapshot-current (schemas in the command docstrings of virtsnap.cli.cmd_domain / cmd_snapshot)."""

import json

import pytest

from virtsnap.cli import main as cli_main

URI = "test:///default"
# top -> {mid -> {leaf1, leaf2}, side}, taken in different domain states; current ends at leaf2
TREE = ("snapshot-create-as test top --description 'the top';"
        " snapshot-create-as test mid; suspend test; snapshot-create-as test leaf1;"
        " snapshot-revert test mid; destroy test; snapshot-create-as test leaf2;"
        " snapshot-revert test top; snapshot-create-as test side; snapshot-current test leaf2")


def documents(text):
    """Every JSON document printed, in order (they are separated by whitespace)."""
    decoder = json.JSONDecoder()
    out, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        value, pos = decoder.raw_decode(text, pos)
        out.append(value)


def run_json(capsys, chain, *options):
    status = cli_main.main(["-q", "-c", URI, *options, chain])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert err == ""
    return documents(out)


def test_snapshot_list_json(capsys):
    (listing,) = run_json(capsys, TREE + "; snapshot-list test --json")
    assert [s["name"] for s in listing] == ["leaf1", "leaf2", "mid", "side", "top"]
    by_name = {s["name"]: s for s in listing}
    assert set(by_name["top"]) == {"name", "parent", "current", "state", "location", "creation_time",
                                   "description"}
    assert by_name["top"]["parent"] is None and by_name["top"]["description"] == "the top"
    assert by_name["mid"]["parent"] == "top" and by_name["side"]["parent"] == "top"
    assert by_name["leaf1"]["state"] == "paused" and by_name["leaf2"]["state"] == "shutoff"
    assert by_name["top"]["state"] == "running" and by_name["top"]["location"] == "internal"
    assert [s["name"] for s in listing if s["current"]] == ["leaf2"]
    assert all(isinstance(s["creation_time"], int) and s["creation_time"] > 0 for s in listing)


def test_snapshot_list_json_honours_filters_and_order(capsys):
    leaves, topo, roots, names, children, empty = run_json(
        capsys, TREE + "; snapshot-list test --leaves --json; snapshot-list test --topological --json;"
                       " snapshot-list test --roots --json; snapshot-list test --name --json;"
                       " snapshot-list test --from mid --json; snapshot-list test --no-metadata --json")
    assert [s["name"] for s in leaves] == ["leaf1", "leaf2", "side"]
    order = [s["name"] for s in topo]
    assert order[0] == "top" and order.index("mid") < order.index("leaf1")
    assert [s["name"] for s in roots] == ["top"]
    assert names == ["leaf1", "leaf2", "mid", "side", "top"]
    assert sorted(s["name"] for s in children) == ["leaf1", "leaf2"]
    assert empty == []


def test_snapshot_list_json_excludes_tree(capsys):
    status = cli_main.main(["-c", URI, "snapshot-list test --tree --json"])
    _, err = capsys.readouterr()
    assert status == 1
    assert err == "error: Options --tree and --json are mutually exclusive\n"


def test_snapshot_info_json(capsys):
    info, current = run_json(capsys, TREE + "; snapshot-info test mid --json; snapshot-info test --current --json")
    assert info == {"name": "mid", "domain": "test", "current": False, "state": "running",
                    "location": "internal", "parent": "top", "children": 2, "descendants": 2, "metadata": True}
    assert current["name"] == "leaf2" and current["current"] is True and current["children"] == 0


def test_snapshot_current_json(capsys):
    none, = run_json(capsys, "snapshot-current test --json")
    assert none == {"domain": "test", "name": None}
    named, full, set_to = run_json(capsys, TREE + "; snapshot-current test --name --json;"
                                                  " snapshot-current test --json; snapshot-current test top --json")
    assert named == {"domain": "test", "name": "leaf2"}
    assert full["name"] == "leaf2" and full["xml"].startswith("<domainsnapshot>")
    assert set_to == {"domain": "test", "name": "top"}
    (after,) = run_json(capsys, TREE + "; snapshot-current test top; snapshot-current test --name --json")
    assert after == {"domain": "test", "name": "top"}


def test_list_json(capsys):
    running, everything, none = run_json(
        capsys, "list --json; destroy test; list --all --json; list --json")
    assert running == [{"id": 1, "name": "test", "uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f",
                        "state": "running", "persistent": True}]
    assert everything == [{"id": None, "name": "test", "uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f",
                           "state": "shut off", "persistent": True}]
    assert none == []


@pytest.mark.parametrize("other", ["--name", "--uuid", "--id", "--table"])
def test_list_json_excludes_other_layouts(capsys, other):
    assert cli_main.main(["-c", URI, f"list --json {other}"]) == 1
    _, err = capsys.readouterr()
    assert err == f"error: Options --json and {other} are mutually exclusive\n"


def test_dominfo_json(capsys):
    running, stopped = run_json(capsys, "dominfo test --json; destroy test; dominfo test --json")
    expected_keys = {"id", "name", "uuid", "os_type", "state", "cpus", "cpu_time_ns", "max_memory_kib",
                     "used_memory_kib", "persistent", "autostart", "managed_save", "security_model",
                     "security_doi", "security_label", "security_enforcing"}
    assert set(running) == expected_keys
    assert running["id"] == 1 and running["name"] == "test" and running["state"] == "running"
    assert running["cpus"] == 2 and running["max_memory_kib"] == 8388608 and running["used_memory_kib"] == 2097152
    assert running["persistent"] is True
    assert stopped["id"] is None and stopped["state"] == "shut off"


def test_json_errors_stay_virsh_errors(capsys):
    status = cli_main.main(["-c", URI, "snapshot-info test nosuch --json"])
    out, err = capsys.readouterr()
    assert status == 1 and out == "\n"
    assert err == "error: Domain snapshot not found: no domain snapshot with matching name 'nosuch'\n"

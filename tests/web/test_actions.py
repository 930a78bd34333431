"""The action endpoint as the page uses it, without a browser: a prune removes exactly what its preview showed or
nothing, and form values no API call could take are refused with libvirt's invalid-argument error."""

from __future__ import annotations

from webtools import api_client, run_action, serve_process


def tree_names(client) -> list[str]:
    return sorted(s["name"] for s in client.get("/api/tree", params={"domain": "test"}).json()["snapshots"])


def test_prune_removes_what_was_previewed_or_nothing():
    with serve_process("-c", "test:///default") as served:
        client, csrf = api_client(served)
        for name in ("a", "b", "c"):
            assert run_action(client, csrf, served, action="create", domain="test", name=name)["state"] == "done"
        run_action(client, csrf, served, action="revert", domain="test", snapshot="a")
        preview = run_action(client, csrf, served, action="prune", domain="test", dry_run=True, keep_last=0)
        assert preview["message"] == "Prune preview: 2 to remove, 1 kept"
        assert {d["name"]: d["action"] for d in preview["result"]} == {"a": "keep", "b": "remove", "c": "remove"}
        # The page confirmed only 'c' (say the tree changed in between): refused, nothing removed.
        stale = run_action(client, csrf, served, action="prune", domain="test", keep_last=0, expect=["c"])
        assert stale["state"] == "failed" and stale["code"] == 55
        assert stale["message"] == ("operation invalid: the snapshots have changed since the preview; "
                                    "preview again")
        assert tree_names(client) == ["a", "b", "c"]
        done = run_action(client, csrf, served, action="prune", domain="test", keep_last=0, expect=["c", "b"])
        assert done["message"] == "Pruned 2 snapshots" and tree_names(client) == ["a"]


def test_bad_form_values_are_refused_naming_them():
    with serve_process("-c", "test:///default") as served:
        client, csrf = api_client(served)
        cases = [
            ({"action": "create", "domain": "test", "name": "x", "kind": "memory-only"},
             "invalid argument: 'kind' must be one of default, disk-only"),
            ({"action": "create", "domain": "test", "name": "x", "live": "yes"},
             "invalid argument: 'live' must be true or false"),
            ({"action": "create", "domain": "test", "name": "bell\x07"},
             "invalid argument: All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control "
             "characters"),
            ({"action": "prune", "domain": "test", "keep_last": -1}, "invalid argument: 'keep_last' must be a "
             "non-negative integer"),
        ]
        for fields, message in cases:
            job = run_action(client, csrf, served, **fields)
            assert (job["state"], job["code"], job["message"]) == ("failed", 8, message), fields
        unknown = client.post("/api/action", json={"action": "rm -rf", "domain": "test"},
                              headers={"Origin": served.base, "X-CSRF-Token": csrf})
        assert unknown.status_code == 400 and unknown.json()["error"] == "invalid argument: unknown action 'rm -rf'"
        assert tree_names(client) == []

"""`virtsnap serve -c libvirt+test:///default` in a real browser: the web view over the libvirt+ driver (libvirt's
own test driver underneath) creates, reverts, deletes and prunes, and shows libvirt's own errors verbatim."""

from __future__ import annotations

from webtools import create, delete, names, open_page, prune, revert, serve_process


def test_create_revert_prune_delete_through_libvirt(browser):
    with serve_process("-c", "libvirt+test:///default") as served:
        open_page(browser, served, "test")
        for name in ("a", "b", "c"):
            assert create(browser, name) == f"Domain snapshot {name} created"
        assert create(browser, "a") == "error: operation failed: domain moment a already exists"  # libvirt's
        _said, result = revert(browser, "a")
        assert result == "Domain 'test' reverted to snapshot a"
        create(browser, "d")  # current d: its ancestor a is kept by prune whatever the policy
        doomed, result = prune(browser, keep_last=0)
        assert sorted(doomed) == ["b", "c"] and result == "Pruned 2 snapshots"
        assert sorted(names(browser)) == ["a", "d"]
        assert delete(browser, "a", "children") == "Domain snapshot a and its children deleted"
        assert names(browser) == []

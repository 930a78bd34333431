"""`virtsnap serve -c test:///default` in a real browser: create, revert, delete and edit through the page, the
confirmations say what they will do, libvirt's errors appear verbatim, and server text is never markup."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from webtools import (
    choose,
    confirm,
    create,
    delete,
    dialog_text,
    finish,
    names,
    open_page,
    protect,
    prune,
    revert,
    row,
    serve_process,
    wait,
)


def current(browser) -> list[str]:
    return [li.get_attribute("data-name") for li in browser.find_elements(By.CSS_SELECTOR, "#tree li.current")]


def test_create_revert_delete(browser):
    with serve_process("-c", "test:///default") as served:
        open_page(browser, served, "test")
        assert browser.find_element(By.CSS_SELECTOR, "#tree li.now").text.startswith("NOW")
        assert create(browser, "before", "<b>bold?</b> & more") == "Domain snapshot before created"
        assert create(browser, "after") == "Domain snapshot after created"
        assert names(browser) == ["before", "after"]
        assert current(browser) == ["after"]
        # Text from the server is shown as text: the description's tags are characters, not elements.
        desc = row(browser, "before").find_element(By.CSS_SELECTOR, ".desc")
        assert desc.text == "<b>bold?</b> & more" and desc.find_elements(By.TAG_NAME, "b") == []

        said, result = revert(browser, "before")
        assert "will be lost" in said and "since snapshot 'after'" in said
        assert result == "Domain 'test' reverted to snapshot before"
        assert current(browser) == ["before"]
        # The "now" node follows the current snapshot: a new snapshot branches from 'before'.
        assert create(browser, "branch") == "Domain snapshot branch created"
        assert row(browser, "before").get_attribute("aria-expanded") == "true"
        assert sorted(names(browser)) == ["after", "before", "branch"]

        assert delete(browser, "after") == "Domain snapshot after deleted"
        assert names(browser) == ["before", "branch"]
        assert delete(browser, "before", "children-only") == "Domain snapshot before children deleted"
        assert names(browser) == ["before"]
        create(browser, "kid")
        assert delete(browser, "before", "children") == "Domain snapshot before and its children deleted"
        assert names(browser) == []


def test_errors_are_libvirts_verbatim(browser):
    with serve_process("-c", "test:///default") as served:
        open_page(browser, served, "test")
        create(browser, "dup")
        assert create(browser, "dup") == "error: operation failed: domain moment dup already exists"
        assert names(browser) == ["dup"]
        # Disk-only on the test driver is refused by the driver, and the page says so in libvirt's words.
        result = create(browser, "disky", disk_only=True)
        assert result.startswith("error: ") and names(browser) == ["dup"]


def test_edit_description_and_delete_choices(browser):
    with serve_process("-c", "test:///default") as served:
        open_page(browser, served, "test")
        create(browser, "root", "old words")
        create(browser, "leaf")
        choose(browser, "root")

        def edit() -> None:
            browser.find_element(By.ID, "act-edit").click()
            dialog_text(browser)
            browser.find_element(By.ID, "f-description").send_keys("new words & <more>")
            confirm(browser)
        assert finish(browser, edit) == "Snapshot root edited."
        assert row(browser, "root").find_element(By.CSS_SELECTOR, ".desc").text == "new words & <more>"
        wait(browser, lambda d: "<description>new words &amp; &lt;more&gt;</description>"
             in d.find_element(By.ID, "xml").text)  # the XML comes with its own request
        assert current(browser) == ["leaf"]  # redefining the description left the current snapshot alone

        choose(browser, "leaf")
        browser.find_element(By.ID, "act-delete").click()
        text = dialog_text(browser)
        assert "Deletes 'leaf'." in text
        # A leaf has nothing below it: the subtree choices are offered but disabled.
        assert not browser.find_element(By.ID, "f-mode-children").is_enabled()
        browser.find_element(By.ID, "dialog-cancel").click()
        assert names(browser) == ["root", "leaf"]


def test_protect_and_prune(browser):
    with serve_process("-c", "test:///default") as served:
        open_page(browser, served, "test")
        for name in ("a", "b", "c"):
            create(browser, name)
        revert(browser, "a")
        create(browser, "d")  # current d; its ancestor a is kept by prune whatever the policy
        assert protect(browser, "c") == "Snapshot c protected"
        assert row(browser, "c").find_element(By.CSS_SELECTOR, ".badge.protected").text == "protected"
        assert row(browser, "c").find_element(By.CSS_SELECTOR, ".size").text == "0 B"  # the test driver's size

        doomed, result = prune(browser, keep_last=0)
        assert doomed == ["b"] and result == "Pruned 1 snapshot"
        assert sorted(names(browser)) == ["a", "c", "d"]

        # A protected snapshot: a plain delete is refused in libvirt's words; FORCE, offered in the dialog, deletes it.
        assert delete(browser, "c").startswith("error: Requested operation is not valid: snapshot 'c' is protected")
        choose(browser, "c")

        def forced() -> None:
            browser.find_element(By.ID, "act-delete").click()
            assert "Also delete protected snapshots (FORCE): c" in dialog_text(browser)
            browser.find_element(By.ID, "f-force").click()
            confirm(browser)
        assert finish(browser, forced) == "Domain snapshot c deleted"
        assert sorted(names(browser)) == ["a", "d"]


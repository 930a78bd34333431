"""`virtsnap serve` over a real TCG guest: snapshot, revert, prune and delete through the page in headless Chromium,
with the guest agent's marker file proving the revert (the server is its own process, as a user runs it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from .conftest import agent_for, domain_xml, guest_read, image_tags

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
from webtools import (
    choose,
    chromium,
    confirm,
    create,
    delete,
    dialog_text,
    finish,
    names,
    open_page,
    prune,
    revert,
    serve_process,
    wait,
)

pytestmark = pytest.mark.qemu


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def test_snapshot_revert_delete_through_the_page(guest, workdir, conn, browser):
    dom = conn.defineXML(domain_xml(guest, workdir, "webguest"))
    dom.create()
    with agent_for(conn, dom) as agent:
        agent.shell("echo before > /mnt/marker; sync")
    with serve_process("-c", "qemu:///session") as served:
        open_page(browser, served, "webguest")
        assert create(browser, "marked", "marker says before") == "Domain snapshot marked created"
        assert image_tags(str(workdir / "webguest.qcow2")) == ["marked"]
        with agent_for(conn, dom) as agent:
            agent.shell("echo after > /mnt/marker; sync")
        assert create(browser, "later") == "Domain snapshot later created"

        said, result = revert(browser, "marked")
        assert "The domain's memory and every disk change made since snapshot 'later'" in said
        assert result == "Domain 'webguest' reverted to snapshot marked"
        assert guest_read(conn, dom, "cat /mnt/marker").strip() == "before"
        assert dom.state()[0] == 1  # running, as the snapshot was

        # 'later' is neither current nor an ancestor of it: the only one a keep-nothing policy removes.
        assert prune(browser, keep_last=0) == (["later"], "Pruned 1 snapshot")
        assert image_tags(str(workdir / "webguest.qcow2")) == ["marked"]

        assert delete(browser, "marked") == "Domain snapshot marked deleted"
        assert names(browser) == []
        assert image_tags(str(workdir / "webguest.qcow2")) == []


def test_revert_offers_force_when_the_driver_asks(guest, workdir, conn, browser):
    """Starting a running guest from a snapshot taken while it was off means respawning QEMU: the driver answers
    libvirt's "revert requires force", the page then offers FORCE quoting it, and the forced revert runs."""
    dom = conn.defineXML(domain_xml(guest, workdir, "webforce", agent=False))
    dom.snapshotCreateXML("<domainsnapshot><name>cold</name></domainsnapshot>")
    dom.create()
    with serve_process("-c", "qemu:///session") as served:
        open_page(browser, served, "webforce")
        choose(browser, "cold")
        refused = "revert requires force: must respawn guest to start inactive snapshot"

        def ask_running() -> None:
            browser.find_element(By.ID, "act-revert").click()
            assert "FORCE" not in dialog_text(browser)
            browser.find_element(By.ID, "f-start-running").click()
            confirm(browser)
            wait(browser, lambda d: d.find_elements(By.ID, "force-reason"))
        assert finish(browser, ask_running) == f"error: {refused}"
        assert browser.find_element(By.ID, "force-reason").text == refused
        assert browser.find_element(By.ID, "dialog-ok").text == "Revert with FORCE"
        pid = dom.ID()

        def forced() -> None:
            browser.find_element(By.ID, "f-start-running").click()
            confirm(browser)
        assert finish(browser, forced) == "Domain 'webforce' reverted to snapshot cold"
        assert dom.state()[0] == 1 and conn.lookupByName("webforce").ID() != pid  # a new QEMU, running

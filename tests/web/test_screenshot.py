"""The picture in docs/web.md: a small branching history on test:///default as the page shows it. The test
checks what the picture must show; VIRTSNAP_WRITE_SCREENSHOT=1 also writes it to docs/img/web-tree.png."""

from __future__ import annotations

import os
import shutil

from selenium.webdriver.common.by import By
from webtools import REPO, choose, clear, open_page, serve_inprocess

import virtsnap

HISTORY = [  # (name, description, revert to this first)
    ("fresh-install", "Debian 12 minimal, no updates", None),
    ("base-packages", "nginx, PostgreSQL 15, certbot", None),
    ("app-v1.0", "release 1.0 deployed, smoke tests green", None),
    ("before-migration", "schema 41 -> 42 about to run", None),
    ("app-v1.1", "release 1.1 after the migration", None),
    ("try-zfs", "experiment: data on ZFS", "base-packages"),
    ("zfs-tuned", "recordsize=16k for the database", None),
    ("app-v1.1-hotfix", "CVE fix backported", "app-v1.1"),
]


def test_screenshot_of_the_tree(browser, tmp_path):
    conn = virtsnap.open("test:///default")
    dom = conn.lookupByName("test")
    try:
        for name, description, base in HISTORY:
            if base:
                dom.revertToSnapshot(dom.snapshotLookupByName(base))
            dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name>"
                                  f"<description>{description}</description></domainsnapshot>")
        dom.revertToSnapshot(dom.snapshotLookupByName("app-v1.1"))
        with serve_inprocess(conn) as served:
            open_page(browser, served, "test")
            choose(browser, "app-v1.1")
            now = browser.find_element(By.CSS_SELECTOR, "#tree li.now")
            assert now.text.startswith("NOW") and now.is_displayed()
            assert browser.find_element(By.CSS_SELECTOR, "#tree li.current").get_attribute("data-name") == "app-v1.1"
            assert "<name>app-v1.1</name>" in browser.find_element(By.ID, "xml").text
            shot = tmp_path / "web-tree.png"
            assert browser.save_screenshot(str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("VIRTSNAP_WRITE_SCREENSHOT") == "1":
                shutil.copyfile(shot, REPO / "docs" / "img" / "web-tree.png")
    finally:
        clear(dom)
        conn.close()

"""The picture in docs/web.md: a branching history of a guest-less qemu:///session domain (internal snapshots
with real data, written by qemu-io between them) as the page shows it, sizes included. The test checks what the
picture must show; VIRTSNAP_WRITE_SCREENSHOT=1 also writes it to docs/img/web-tree.png."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from selenium.webdriver.common.by import By
from webtools import REPO, choose, open_page, serve_process, text, wait

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from qemu_offline import define_offline

HISTORY = [  # (name, description, revert to this first, MiB written before it)
    ("fresh-install", "Debian 12 minimal, no updates", None, 24),
    ("base-packages", "nginx, PostgreSQL 15, certbot", None, 9),
    ("app-v1.0", "release 1.0 deployed, smoke tests green", None, 6),
    ("before-migration", "schema 41 -> 42 about to run", None, 3),
    ("app-v1.1", "release 1.1 after the migration", None, 5),
    ("try-zfs", "experiment: data on ZFS", "base-packages", 12),
    ("zfs-tuned", "recordsize=16k for the database", None, 2),
    ("app-v1.1-hotfix", "CVE fix backported", "app-v1.1", 1),
]


def test_screenshot_of_the_tree(browser, tmp_path, monkeypatch):
    work = Path(tempfile.mkdtemp(prefix="vs-shot-", dir="/tmp"))
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(work / "state"))
    conn, dom, disk = define_offline(work, "web-server", size="128M")
    try:
        for name, description, base, mib in HISTORY:
            if base:
                dom.revertToSnapshot(dom.snapshotLookupByName(base))
            # Overwrite the start of the disk: the previous snapshot keeps its own copy of what it held.
            subprocess.run(["qemu-io", "-c", f"write -P {len(name)} 0 {mib}M", str(disk)], check=True,
                           capture_output=True)
            dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name>"
                                  f"<description>{description}</description></domainsnapshot>")
        dom.revertToSnapshot(dom.snapshotLookupByName("app-v1.1"))
        subprocess.run(["qemu-io", "-c", "write -P 7 0 2M", str(disk)], check=True, capture_output=True)
        with serve_process("-c", "qemu:///session") as served:
            open_page(browser, served, "web-server")
            choose(browser, "app-v1.1")
            wait(browser, lambda d: text(d, "#size-value") not in (None, "—"))
            now = browser.find_element(By.CSS_SELECTOR, "#tree li.now")
            assert now.text.startswith("NOW") and now.is_displayed()
            assert browser.find_element(By.CSS_SELECTOR, "#tree li.current").get_attribute("data-name") == "app-v1.1"
            wait(browser, lambda d: "<name>app-v1.1</name>" in d.find_element(By.ID, "xml").text)
            sizes = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#tree li[data-name] .size")]
            assert all(size.endswith("MiB") for size in sizes), sizes
            shot = tmp_path / "web-tree.png"
            assert browser.save_screenshot(str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("VIRTSNAP_WRITE_SCREENSHOT") == "1":
                shutil.copyfile(shot, REPO / "docs" / "img" / "web-tree.png")
    finally:
        conn.close()
        shutil.rmtree(work, ignore_errors=True)

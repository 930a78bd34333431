"""The page over qemu:///session with a guest-less domain (internal snapshots made by qemu-img): the tree follows
changes another process makes (the CLI) while the page is open, and the page's own actions reach the image."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from webtools import create, delete, names, open_page, revert, serve_process, text, wait

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from qemu_offline import define_offline


@pytest.fixture
def offline(monkeypatch):
    work = Path(tempfile.mkdtemp(prefix="vs-web-", dir="/tmp"))
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(work / "state"))
    conn, dom, disk = define_offline(work, "webdom")
    yield dom, disk
    conn.close()
    shutil.rmtree(work, ignore_errors=True)


def cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "virtsnap", "-c", "qemu:///session", *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def image_tags(disk: Path) -> list[str]:
    out = subprocess.run(["qemu-img", "snapshot", "-U", "-l", str(disk)], capture_output=True, text=True, check=True)
    return [line.split()[1] for line in out.stdout.splitlines()[2:] if line.strip()]


def shown_bytes(text: str) -> float:
    value, unit = text.lstrip("≈").split()
    return float(value) * 1024 ** ["B", "KiB", "MiB", "GiB"].index(unit)


def test_tree_follows_another_process(browser, offline):
    dom, offline = offline
    with serve_process("-c", "qemu:///session") as served:
        open_page(browser, served, "webdom")
        assert create(browser, "from-page") == "Domain snapshot from-page created"
        assert image_tags(offline) == ["from-page"]
        # The size column: what the API's getSize says deleting it would free (qcow2 clusters only it holds).
        size = dom.snapshotLookupByName("from-page").getSize()
        cell = '#tree li[data-name="from-page"] .size'
        wait(browser, lambda d: text(d, cell) not in (None, "—"))
        total = size["memory"] + size["disk"]
        assert total > 0 and abs(shown_bytes(text(browser, cell)) - total) <= 0.05 * total

        cli("snapshot-create-as", "webdom", "from-cli", "made elsewhere")
        wait(browser, lambda d: names(d) == ["from-page", "from-cli"])
        assert browser.find_element(By.CSS_SELECTOR, "#tree li.current").get_attribute("data-name") == "from-cli"
        wait(browser, lambda d: text(d, "#domains td.count") == "2")

        said, result = revert(browser, "from-page")
        assert "Every disk change made since snapshot 'from-cli'" in said  # the domain is off: no memory to lose
        assert result == "Domain 'webdom' reverted to snapshot from-page"
        assert cli("snapshot-current", "webdom", "--name") == "from-page\n"

        cli("snapshot-delete", "webdom", "from-page")
        wait(browser, lambda d: names(d) == ["from-cli"])
        assert delete(browser, "from-cli") == "Domain snapshot from-cli deleted"
        assert cli("snapshot-list", "webdom", "--name") == "\n"
        assert image_tags(offline) == []

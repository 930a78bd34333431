"""Helpers for the browser tests of `virtsnap serve`: the real command in a child process or the app in this one,
Debian's Chromium driven by Selenium (headless), and the page's own controls used as a person would."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from virtsnap.web.app import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]
WAIT = 60  # seconds a condition may take on a loaded machine before the test fails


class Served:
    def __init__(self, url: str, proc: subprocess.Popen[str] | None = None) -> None:
        self.url = url  # with ?token=...
        self.base, _, self.token = url.partition("/?token=")
        self.proc = proc


@contextlib.contextmanager
def serve_process(*args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """`virtsnap serve --listen 127.0.0.1:0 ARGS`, as a user runs it; the URL is read from what it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "virtsnap", "serve", "--listen", "127.0.0.1:0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "?token=" in line:
                yield Served(line.strip(), proc)
                break
        else:
            raise AssertionError(f"virtsnap serve printed no URL: {proc.communicate()[1]}")
    finally:
        proc.terminate()
        proc.wait(30)


@contextlib.contextmanager
def serve_inprocess(conn: object, readonly: bool = False) -> Iterator[Served]:
    """The app over a connection of this process (so the test can shape test:///default's state first)."""
    token = "t-" + os.urandom(16).hex()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(create_app(conn, token, readonly=readonly),  # type: ignore[arg-type]
                                           log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}/?token={token}")
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,900", "--lang=en-US"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def wait(driver: webdriver.Chrome, condition, timeout: float = WAIT):  # type: ignore[no-untyped-def]
    # The page redraws the tree whenever its poll sees a change: an element found a moment ago may be replaced,
    # so a condition that meets a replaced element is simply evaluated again.
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def open_page(driver: webdriver.Chrome, served: Served, domain: str) -> None:
    driver.get(f"{served.url}#{domain}")
    wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-tree-painted") == "1")


def row(driver: webdriver.Chrome, name: str):  # type: ignore[no-untyped-def]
    return driver.find_element(By.CSS_SELECTOR, f'#tree li[data-name="{name}"]')


def names(driver: webdriver.Chrome) -> list[str]:
    """The tree's snapshot rows in order, read in one step (the page may redraw at any poll)."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "return [...document.querySelectorAll('#tree li[data-name]')].map((li) => li.dataset.name)")


def text(driver: webdriver.Chrome, selector: str) -> str | None:
    """An element's text read in one step, None when it is not there."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null", selector)


def finish(driver: webdriver.Chrome, start_action) -> str:  # type: ignore[no-untyped-def]
    """Run `start_action` (clicks that end in an action) and wait until the page has finished and redrawn it;
    the page's result line."""
    before = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-done") or 0)
    start_action()
    wait(driver, lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-done") or 0) > before)
    return driver.find_element(By.ID, "status").text


def confirm(driver: webdriver.Chrome) -> None:
    driver.find_element(By.ID, "dialog-ok").click()


def create(driver: webdriver.Chrome, name: str, description: str = "", disk_only: bool = False) -> str:
    def go() -> None:
        driver.find_element(By.ID, "new-snapshot").click()
        wait(driver, lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is not None)
        driver.find_element(By.ID, "f-name").send_keys(name)
        driver.find_element(By.ID, "f-description").send_keys(description)
        if disk_only:
            driver.find_element(By.ID, "f-kind-disk-only").click()
        confirm(driver)
    return finish(driver, go)


def click_row(driver: webdriver.Chrome, name: str) -> None:
    """Click a snapshot's row as a person would; a row replaced by a redraw between finding and clicking it is
    found again (the click either reached the row or raised, so it is never sent twice)."""
    def attempt(d: webdriver.Chrome) -> bool:
        row(d, name).click()
        return True
    wait(driver, attempt)


def choose(driver: webdriver.Chrome, name: str) -> None:
    click_row(driver, name)
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#details h2").text == name)


def dialog_text(driver: webdriver.Chrome) -> str:
    wait(driver, lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is not None)
    return driver.find_element(By.ID, "dialog").text


def revert(driver: webdriver.Chrome, name: str) -> tuple[str, str]:
    """(what the confirmation said, the result line)."""
    choose(driver, name)
    said: list[str] = []

    def go() -> None:
        driver.find_element(By.ID, "act-revert").click()
        said.append(dialog_text(driver))
        confirm(driver)
    result = finish(driver, go)
    return said[0], result


def delete(driver: webdriver.Chrome, name: str, mode: str = "this") -> str:
    choose(driver, name)

    def go() -> None:
        driver.find_element(By.ID, "act-delete").click()
        dialog_text(driver)
        driver.find_element(By.ID, f"f-mode-{mode}").click()
        confirm(driver)
    return finish(driver, go)


def api_client(served: Served) -> tuple[httpx.Client, str]:
    """An HTTP client holding the page's cookies after the token URL, and the session's CSRF token."""
    client = httpx.Client(base_url=served.base, follow_redirects=True, timeout=WAIT)
    client.get(served.url).raise_for_status()
    return client, client.get("/api/session").json()["csrf"]


def grow(dom, count: int, prefix: str = "s") -> None:  # type: ignore[no-untyped-def]
    """A deterministic forest of `count` snapshots: each the child of the one before, except every 10th, which
    branches off an earlier one (a revert, then a create), as a long-lived domain's history does."""
    import random

    rng = random.Random(19)
    for i in range(count):
        if i and i % 10 == 0:
            dom.revertToSnapshot(dom.snapshotLookupByName(f"{prefix}{rng.randrange(i):04d}"))
        dom.snapshotCreateXML(f"<domainsnapshot><name>{prefix}{i:04d}</name>"
                              f"<description>step {i}</description></domainsnapshot>")


def clear(dom) -> None:  # type: ignore[no-untyped-def]
    """Leave test:///default as found: every snapshot gone."""
    for root in dom.listAllSnapshots(1):  # VIR_DOMAIN_SNAPSHOT_LIST_ROOTS
        root.delete(1)  # VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN


def protect(driver: webdriver.Chrome, name: str) -> str:
    choose(driver, name)
    return finish(driver, lambda: driver.find_element(By.ID, "act-protect").click())


def prune(driver: webdriver.Chrome, **policy: int | str) -> tuple[list[str], str]:
    """Preview then prune through the page: (the names the preview listed for removal, the result line)."""
    def preview() -> None:
        driver.find_element(By.ID, "prune").click()
        dialog_text(driver)
        for key, value in policy.items():
            driver.find_element(By.ID, f"f-{key}").send_keys(str(value))
        confirm(driver)
    finish(driver, preview)
    wait(driver, lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is not None)
    doomed = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#prune-list li")]
    marked = [li.get_attribute("data-name") for li in driver.find_elements(By.CSS_SELECTOR, "#tree li.prune-remove")]
    assert sorted(marked) == sorted(doomed)  # the tree shows the same verdicts as the list
    return doomed, finish(driver, lambda: confirm(driver))


def run_action(client: httpx.Client, csrf: str, served: Served, **fields: object) -> dict:  # type: ignore[type-arg]
    """POST one action as the page does and wait for its job: the job's final state."""
    response = client.post("/api/action", json=fields, headers={"Origin": served.base, "X-CSRF-Token": csrf})
    job = response.json()
    while job.get("state") == "running":
        job = client.get("/api/job", params={"id": job["id"]}).json()
    return job  # type: ignore[no-any-return]

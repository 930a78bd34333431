"""A thousand snapshots in the page: branches start collapsed except the one that leads to "now", search by
name finds a snapshot with the branch points above it, and the tree is used from the keyboard alone."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from webtools import clear, grow, open_page, serve_inprocess, wait

import virtsnap


@pytest.fixture(scope="module")
def big():
    conn = virtsnap.open("test:///default")
    dom = conn.lookupByName("test")
    grow(dom, 1000)
    with serve_inprocess(conn) as served:
        yield served, dom
    clear(dom)
    conn.close()


def rows(browser) -> list:
    return browser.find_elements(By.CSS_SELECTOR, "#tree li[data-name]")


def focused(browser) -> str | None:
    return browser.switch_to.active_element.get_attribute("data-name")


def test_thousand_snapshots_collapse_and_search(browser, big):
    served, dom = big
    open_page(browser, served, "test")
    assert browser.find_element(By.ID, "tree-title").text == "test — 1000 snapshots, running"
    shown = [li.get_attribute("data-name") for li in rows(browser)]
    assert 0 < len(shown) < 1000
    current = dom.snapshotCurrent()
    path = [current.getName()]
    while True:
        try:
            path.append(dom.snapshotLookupByName(path[-1]).getParent().getName())
        except virtsnap.libvirtError:
            break
    assert set(path) <= set(shown)  # the way to "now" is open
    assert browser.find_elements(By.CSS_SELECTOR, '#tree li[aria-expanded="false"]')

    browser.find_element(By.TAG_NAME, "body").send_keys("/")
    assert browser.switch_to.active_element.get_attribute("id") == "search"
    browser.switch_to.active_element.send_keys("s0777")
    wait(browser, lambda d: d.find_element(By.ID, "matches").text == "1 match")
    hits = browser.find_elements(By.CSS_SELECTOR, "#tree li.hit")
    assert [li.get_attribute("data-name") for li in hits] == ["s0777"]
    assert len(rows(browser)) < 60  # the hit, its branch points and roots: not the hundreds of ancestors
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    assert focused(browser) == "s0777"
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#details h2").text == "s0777")
    # the heading comes first, the XML when its request answers ("loading XML…" until then)
    wait(browser, lambda d: "<description>step 777</description>" in d.find_element(By.ID, "xml").text)

    browser.find_element(By.ID, "search").send_keys(Keys.ESCAPE)
    wait(browser, lambda d: d.find_element(By.ID, "matches").text == "")
    assert len(rows(browser)) == len(shown)


def test_keyboard_moves_collapses_and_expands(browser, big):
    served, _ = big
    open_page(browser, served, "test")
    first = rows(browser)[0]
    first_name = first.get_attribute("data-name")
    first.click()
    assert focused(browser) == first_name
    body_rows = rows(browser)
    browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    assert focused(browser) == body_rows[1].get_attribute("data-name")
    second = body_rows[1].get_attribute("data-name")
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#details h2").text == second)
    # Move down to the first collapsed branch, open it with →, close it again with ←.
    closed = browser.find_element(By.CSS_SELECTOR, '#tree li[aria-expanded="false"]').get_attribute("data-name")
    while focused(browser) != closed:
        browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    before = len(rows(browser))
    browser.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
    opened = browser.find_element(By.CSS_SELECTOR, f'#tree li[data-name="{closed}"]')
    assert opened.get_attribute("aria-expanded") == "true"
    assert len(rows(browser)) > before and focused(browser) == closed
    browser.switch_to.active_element.send_keys(Keys.ARROW_LEFT)
    assert len(rows(browser)) == before and focused(browser) == closed
    browser.switch_to.active_element.send_keys(Keys.END)
    last = browser.find_elements(By.CSS_SELECTOR, "#tree li")[-1]
    assert browser.switch_to.active_element == last
    browser.switch_to.active_element.send_keys(Keys.HOME)
    assert focused(browser) == first_name

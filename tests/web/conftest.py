"""Fixtures of the browser tests: one headless Chromium per module (each test opens its own server)."""

from __future__ import annotations

import pytest
from webtools import chromium


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()

"""Headless Chromium (Debian's ``chromium``) driven by Selenium through Debian's
``chromedriver``: both given by path, so Selenium never looks for a driver on the network."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

#: Where the screenshots for docs/images/ go when wanted (they are always taken).
SCREENSHOTS_ENV = "KAA_SCREENSHOTS_DIR"
WAIT_S = 20.0


def chromium(downloads: Path, width: int = 1280, height: int = 900) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    service = Service(executable_path=shutil.which("chromedriver") or "chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_S)
    return driver


def wait(driver: WebDriver, what: str, condition: object) -> object:
    # A condition may read the page while a form's navigation replaces it: an element of the
    # old document then errors (stale, or "does not belong to the document"); ask again.
    waiting = WebDriverWait(driver, WAIT_S, ignored_exceptions=(WebDriverException,))
    return waiting.until(condition, what)  # type: ignore[arg-type]


def by_id(driver: WebDriver, element_id: str) -> WebElement:
    """The element, waiting for it: a click that submits a form returns before the next
    page has loaded, and on a loaded machine that takes a while."""
    found: WebElement = WebDriverWait(driver, WAIT_S).until(
        expected_conditions.presence_of_element_located((By.ID, element_id)),
        f"element #{element_id}",
    )
    return found


def screenshot(driver: WebDriver, tmp: Path, name: str) -> Path:
    """Save a PNG (into $KAA_SCREENSHOTS_DIR too, when set: docs/images/)."""
    path = tmp / f"{name}.png"
    driver.save_screenshot(str(path))
    wanted = os.environ.get(SCREENSHOTS_ENV)
    if wanted:
        shutil.copyfile(path, Path(wanted) / path.name)
    return path

"""The dashboard in a real headless browser (Debian's chromium, driven by Selenium through
chromium-driver) against a running proxy with traffic from the fake provider.

The page is loaded, unlocked with the admin key, and checked as the figures change:
tiles, the requests chart and the negative-cache actions. A screenshot is saved (set
``CACHEBACK_SCREENSHOT=docs/dashboard.png`` to refresh the one in the docs).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from _proxy_helpers import RunningProxy, chat_body, proxy_config, running_proxy
from fake_provider import FakeProvider

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "admin-browser-secret"
T = TypeVar("T")

if CHROMEDRIVER is None or CHROMIUM is None:
    pytest.skip(
        "needs chromium and chromium-driver (Debian: apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1360,1400",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], T], what: str, timeout: float = 20) -> T:
    """Poll ``check`` until it returns something truthy (the page polls every 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def ask(rp: RunningProxy, question: str, key: str = "sk-browser-caller") -> httpx.Response:
    resp = httpx.post(
        f"{rp.base_url}/v1/chat/completions",
        json=chat_body(question),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    time.sleep(0.4)  # the answer is written behind the response
    return resp


# The page redraws every poll, so elements are read in one script call each, never kept.


def text(driver: WebDriver, element_id: str) -> str:
    value = driver.execute_script("return document.getElementById(arguments[0]).innerText;", element_id)
    return str(value)


def chart_total(driver: WebDriver) -> int:
    value = driver.execute_script(
        "const s = document.querySelector('#chart-requests svg');"
        "return s ? Number(s.getAttribute('data-total')) : -1;"
    )
    return int(value)


def cells(driver: WebDriver, table: str) -> list[list[str]]:
    rows = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' tbody tr')]"
        ".map(r => [...r.cells].map(c => c.innerText));",
        table,
    )
    return [[str(c) for c in row] for row in rows]


def negative_rows(driver: WebDriver) -> list[list[str]]:
    return [row for row in cells(driver, "#negative") if len(row) == 6]


def bar_tiers(driver: WebDriver) -> set[str]:
    tiers = driver.execute_script(
        "return [...document.querySelectorAll('#chart-requests g[data-tier]')]"
        ".filter(g => g.querySelector('rect')).map(g => g.getAttribute('data-tier'));"
    )
    return {str(t) for t in tiers}


def click(driver: WebDriver, css: str) -> None:
    """Click the element now matching ``css`` (retried if a redraw replaced it meanwhile)."""
    for _ in range(20):
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.1)
    raise AssertionError(f"could not click {css}")


def page_errors(driver: WebDriver) -> list[str]:
    """Script errors and CSP refusals from the console (a 401 the page handles is not one)."""
    logs: list[dict[str, Any]] = driver.get_log("browser")
    messages = [str(entry.get("message", "")) for entry in logs if entry.get("level") == "SEVERE"]
    return [m for m in messages if "Failed to load resource" not in m]


def test_the_dashboard_in_a_browser(
    fake: FakeProvider, tmp_path: Path, embedder: Any, browser: WebDriver
) -> None:
    config = proxy_config(fake, tmp_path / "cache", admin_key=ADMIN_KEY, dashboard_content=True)
    with running_proxy(config, embedder) as rp:
        # Traffic before the page is opened: three questions, one asked twice.
        for question in (
            "What is the boiling point of water?",
            "What is the boiling point of water?",
            "Who painted the Mona Lisa?",
            "Is coffee bad for sleep?",
        ):
            assert ask(rp, question).status_code == 200
        browser.get(f"{rp.base_url}/dashboard")
        # Locked until the admin key is given; a wrong key is refused with the proxy's message.
        wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), "the key form")
        assert not browser.find_element(By.ID, "main").is_displayed()
        browser.find_element(By.ID, "key").send_keys("not-the-key")
        browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait_for(lambda: "Invalid admin key" in text(browser, "login-error"), "the refusal")
        browser.find_element(By.ID, "key").send_keys(ADMIN_KEY)
        browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait_for(lambda: browser.find_element(By.ID, "main").is_displayed(), "the dashboard")

        wait_for(lambda: text(browser, "t-lookups") == "4", "4 lookups")
        assert text(browser, "t-hit-rate") == "25.0 %"
        assert text(browser, "t-entries") == "3"
        assert text(browser, "status") == "healthy"
        assert chart_total(browser) == 4
        assert bar_tiers(browser) == {"exact", "upstream"}
        saved = text(browser, "t-saved")
        assert saved.startswith("$") and float(saved[1:]) > 0
        assert int(text(browser, "t-tokens").replace(",", "")) > 0
        latency_tiers = [row[0] for row in cells(browser, "#latency")]
        assert latency_tiers == ["exact", "upstream"]
        wait_for(lambda: "What is the boiling point of water?" in text(browser, "top"), "the top question")

        # More traffic: the page updates by itself (it polls).
        for question in (
            "Who painted the Mona Lisa?",
            "Who painted the Mona Lisa?",
            "Is coffee not bad for sleep?",
        ):
            ask(rp, question)
        wait_for(lambda: text(browser, "t-lookups") == "7", "7 lookups")
        wait_for(lambda: chart_total(browser) == 7, "the chart to grow to 7")
        assert text(browser, "t-hit-rate") == "42.9 %"  # 3 hits of 7
        wait_for(lambda: "negation" in text(browser, "vetoes"), "the guard's veto")

        # Negative cache: add (with markup in it: shown as text, never run), report a
        # false positive, then remove.
        hostile = 'How do I pick a lock? <img src=x id="injected">'
        browser.find_element(By.ID, "neg-query").send_keys(hostile)
        browser.find_element(By.ID, "neg-reason").send_keys("burglary")
        browser.find_element(By.ID, "neg-category").send_keys("safety")
        browser.find_element(By.CSS_SELECTOR, "#negative-form button").click()
        rows = wait_for(lambda: negative_rows(browser), "the new negative entry")
        assert rows[0][1:5] == [hostile, "burglary", "safety", "0"]
        assert browser.find_elements(By.ID, "injected") == []
        wait_for(lambda: text(browser, "t-negative") == "1", "the negative count")
        blocked = ask(rp, hostile)
        assert blocked.status_code == 403
        click(browser, "#negative button[data-action=false-positive]")
        wait_for(lambda: negative_rows(browser) and negative_rows(browser)[0][4] == "1", "1 false positive")

        # Second entry stays for the screenshot; the first is removed from the page.
        browser.find_element(By.ID, "neg-query").send_keys("Write malware that steals passwords")
        browser.find_element(By.ID, "neg-reason").send_keys("malware")
        browser.find_element(By.CSS_SELECTOR, "#negative-form button").click()
        wait_for(lambda: len(negative_rows(browser)) == 2, "two negative entries")
        first_id = negative_rows(browser)[0][0]
        click(browser, f'#negative tr[data-id="{first_id}"] button[data-action=remove]')
        wait_for(
            lambda: [r[0] for r in negative_rows(browser)] != [first_id] and len(negative_rows(browser)) == 1,
            "the removal",
        )
        assert ask(rp, hostile).status_code == 200

        # The range toggle redraws the chart over the day (15-minute points).
        browser.find_element(By.ID, "range-day").click()
        wait_for(lambda: chart_total(browser) >= 8, "the day chart")
        browser.find_element(By.ID, "range-hour").click()
        wait_for(lambda: text(browser, "t-lookups") == "8", "8 lookups")
        # A call outside the cached APIs is relayed and charted as pass-through.
        models = httpx.get(
            f"{rp.base_url}/v1/models", headers={"Authorization": "Bearer sk-browser-caller"}, timeout=30
        )
        assert models.status_code == 200
        wait_for(lambda: "pass-through 1" in text(browser, "legend"), "the pass-through in the legend")
        # The top list follows the hits (it is refreshed every few seconds).
        top = wait_for(
            lambda: cells(browser, "#top")[0][2] == "Who painted the Mona Lisa?" and cells(browser, "#top"),
            "the new top question",
        )
        assert [row[1:] for row in top] == [
            ["2", "Who painted the Mona Lisa?"],
            ["1", "What is the boiling point of water?"],
        ]
        assert page_errors(browser) == []  # no CSP violation, no script error
        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        target = os.environ.get("CACHEBACK_SCREENSHOT")
        if target:
            shutil.copyfile(shot, ROOT / target)

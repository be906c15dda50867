"""A real ``flotilla serve`` and a real headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium) for the dashboard's browser tests.

Without chromium, chromedriver or selenium the tests are skipped with the reason,
except under ``CI=true``, where they fail (run ``scripts/setup-browser.sh``).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
WIDTH, HEIGHT = 1366, 768
CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
    "--disable-default-apps", "--password-store=basic", f"--window-size={WIDTH},{HEIGHT}",
)  # fmt: skip


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_browser() -> None:
    """Skip (or, under CI, fail) when the browser stack is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        reason = f"browser tests need {', '.join(missing)}: run scripts/setup-browser.sh"
        if in_ci():
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)


@contextmanager
def chrome(profile_dir: Path) -> Iterator[Any]:
    """A headless Chromium at 1366x768 with a fresh profile; quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(profile_dir.parent / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_window_size(WIDTH, HEIGHT)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Served:
    endpoint: str
    token: str
    data_dir: Path
    log: Path

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"X-Auth-Token": self.token, **kw.pop("headers", {})}
        return httpx.request(method, self.endpoint + path, headers=headers, timeout=30, **kw)


@contextmanager
def flotilla_serve(root: Path, **env: str) -> Iterator[Served]:
    """``flotilla serve`` on a free port with a fresh data dir; stopped by its pid."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "FLOTILLA_"))}
    try:
        launched = serving.launch(
            root / "data", {**clean, "HOME": str(root), **env}, log=root / "server.log", cwd=root
        )
    except serving.ServeFailed as exc:
        pytest.fail(str(exc))
    try:
        served = Served(
            endpoint=launched.url, token=launched.token, data_dir=launched.data_dir, log=launched.log
        )
        if served.api("GET", "/dashboard/login").status_code == 404:
            pytest.fail(
                "flotilla serve has no /dashboard: create_app must include flotilla.web.routes.router"
            )
        yield served
    finally:
        launched.stop()


class Browser:
    """The few things the tests do with a page, by element ids and visible text."""

    def __init__(self, driver: Any, base: str, prefix: str) -> None:
        self.driver, self.base, self.prefix = driver, base, prefix

    def go(self, path: str) -> None:
        self.driver.get(self.base + path)

    def el(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str = "body") -> str:
        value: str = self.el(css).text
        return value

    def fill(self, values: dict[str, str]) -> None:
        """Type into inputs / pick select options / tick check boxes, by field name."""
        from selenium.webdriver.support.ui import Select

        for name, value in values.items():
            field = self.el(f'[name="{name}"]')
            if field.tag_name == "select":
                Select(field).select_by_value(value)
            elif field.get_attribute("type") == "checkbox":
                if field.is_selected() != (value == "on"):
                    field.click()
            else:
                field.clear()
                field.send_keys(value)

    def click(self, css: str) -> None:
        self.el(css).click()

    def wait(self, what: Callable[[], bool], timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if what():
                    return
            except Exception:  # the page is being replaced; look again
                pass
            if time.monotonic() > deadline:
                self.shot("timeout")
                pytest.fail(
                    f"{message} (waited {timeout:.0f} s); page: {self.driver.current_url}\n{self.text()[:1500]}"
                )
            time.sleep(0.25)

    def wait_text(self, needle: str, timeout: float = 15, css: str = "body") -> None:
        self.wait(lambda: needle in self.text(css), timeout, f"{needle!r} did not appear")

    def shot(self, name: str, *, full: bool = False) -> Path:
        """``artifacts/screenshots/<prefix>-<name>.png``: the 1366x768 viewport, or the whole page."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.prefix}-{name}.png"
        if full:
            shot = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot", {"captureBeyondViewport": True, "format": "png"}
            )
            path.write_bytes(base64.b64decode(shot["data"]))
        else:
            self.driver.save_screenshot(str(path))
        return path

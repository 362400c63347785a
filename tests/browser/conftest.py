"""Real-browser fixtures: the studio as a subprocess, driven by Debian's Chromium via Playwright.

- ``studio_server``: one studio for the whole session, on a free port with its own data folder.
- ``studio_server_factory``: start another studio (fresh data folder) when a test needs its own;
  ``module_studio_server`` is one such studio per test module.
- ``browser``: headless ``/usr/bin/chromium``; fails (never skips) when it is missing.
- ``page``: a fresh context and page per test, locale ``en-US`` unless the test says otherwise with
  ``@pytest.mark.locale("fr-FR")`` or ``@pytest.mark.parametrize("page_locale", [...])``; on failure
  a screenshot goes to ``test-results/<test name>.png``.

Every test in this folder gets the ``browser`` marker, so ``pytest -m "not browser"`` leaves them out.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.runner_helpers import seed_bundled_model
from tests.studio_process import StudioServer, free_tcp_port, start_studio, stop_studio  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "test-results"
CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
PAGE_TIMEOUT_MS = 30_000
DEFAULT_LOCALE = "en-US"
VIEWPORT = {"width": 1280, "height": 900}

_REPORTS = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def studio_server_factory(tmp_path_factory, bundled_model_dir) -> Iterator[Callable[[str], StudioServer]]:
    """Start a studio with a fresh data folder (holding only the prepared bundled model):
    ``server = studio_server_factory("imports")``.

    Every studio started this way is stopped at the end of the session at the latest.
    """
    started: list[StudioServer] = []

    def start(name: str = "studio") -> StudioServer:
        folder = tmp_path_factory.mktemp(name)
        seed_bundled_model(folder / "data", bundled_model_dir)
        server = start_studio(folder / "data", folder / "server.log")
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        stop_studio(server)


@pytest.fixture(scope="session")
def studio_server(studio_server_factory) -> StudioServer:
    """The studio shared by every browser test of the session."""
    return studio_server_factory("studio")


@pytest.fixture(scope="module")
def module_studio_server(studio_server_factory, request) -> Iterator[StudioServer]:
    """A studio of this test module's own, with an empty data folder, stopped after the module."""
    server = studio_server_factory(request.module.__name__.rsplit(".", 1)[-1])
    yield server
    stop_studio(server)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM_PATH.exists():
        pytest.fail(f"The browser tests need Debian's Chromium at {CHROMIUM_PATH}. Install it with "
                    "'apt-get install -y chromium' (as root), or run 'make test', which does.",
                    pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM_PATH), headless=True,
                                              args=list(CHROMIUM_ARGS))
        yield chromium
        chromium.close()


@pytest.fixture
def page_locale(request) -> str:
    """The page's locale: ``@pytest.mark.locale("zh-CN")``, a parametrize on this name, or en-US."""
    marker = request.node.get_closest_marker("locale")
    return marker.args[0] if marker else DEFAULT_LOCALE


@pytest.fixture
def page(browser, page_locale, request) -> Iterator[Page]:
    context = browser.new_context(locale=page_locale, viewport=VIEWPORT)
    new_page = context.new_page()
    new_page.set_default_timeout(PAGE_TIMEOUT_MS)
    yield new_page
    if has_failed(request.node):
        save_screenshot(new_page, RESULTS_DIR / f"{screenshot_name(request.node.name)}.png")
    context.close()


def save_screenshot(failed_page: Page, path: Path) -> None:
    path.parent.mkdir(exist_ok=True)
    try:
        failed_page.screenshot(path=str(path), full_page=True)
    except PlaywrightError as error:  # a crashed page must not hide the test's own failure
        warnings.warn(f"No screenshot saved to {path}: {error}", stacklevel=1)


def screenshot_name(test_name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", test_name).strip("_")


def has_failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_REPORTS, {})
    return any(report.failed for report in reports.values())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item so ``page`` can tell whether the test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)

"""The web view in a real browser: Debian's chromium driven by Selenium (system chromedriver).

Sign in as the job centre, open the worklist, open Ole's timeline (the rehabilitation plan
appears only after his consent is recorded), open the key figures with a chart; screenshots
go to ``var/test-artifacts/web/``; axe-core finds no serious or critical violations on any
page. Without chromium/chromedriver (``make install`` adds them as root through apt-get) the
test skips loudly, and fails under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live.harness import LiveGateway, serve
from web_support import consent, load_ole

from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from tests.figures.figures_support import seed

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "test-artifacts" / "web"
AXE = REPO / "tests" / "web" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _cannot_run(reason: str) -> None:
    message = f"BROWSER TEST CANNOT RUN, WEB VIEW NOT TESTED IN A BROWSER: {reason}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        _cannot_run("chromium or chromedriver is not installed (make install adds them as root)")
    if not AXE.is_file():
        _cannot_run(f"axe-core is not installed at {AXE} (make install runs npm ci)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespaces for the sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--lang=da",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveGateway]:
    # One store is enough here (SQLite, as `make run`): the pages' data rules are tested on
    # both stores in test_web_views.py.
    settings = Settings(
        environment="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/store.db",
        var_dir=tmp_path / "var",
        keys_dir=tmp_path / "keys",
        deadline_in_process=False,
    )
    with serve(settings) as gateway:
        yield gateway


def _axe(driver: Any, page: str) -> list[str]:
    """axe-core's serious and critical violations on the current page (WCAG 2 A and AA)."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'best-practice']}})"
        ".then(r => done({passes: r.passes.length,"
        " violations: r.violations.map(v => [v.id, v.impact, v.nodes.length])}))"
        ".catch(e => done({passes: 0, violations: [['axe-error', 'critical', String(e)]]}));"
    )
    assert result["passes"] > 10, f"{page}: axe-core did not run ({result})"
    result = result["violations"]
    return [
        f"{page}: {rule} ({impact}, {nodes})"
        for rule, impact, nodes in result
        if impact in ("serious", "critical")
    ]


def _shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


async def _seed_population(settings: Settings) -> None:
    database = Database(settings.database_url)
    try:
        await seed(Store(database, fhir_base=settings.fhir_base), jobcentre_cases=6, unit_plans=6)
    finally:
        await database.dispose()


def test_caseworker_in_a_real_browser(browser: Any, live: LiveGateway) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base = live.base_url
    with httpx.Client(timeout=60) as client:
        ole = load_ole(
            base,
            live.token("auh-ortopaedi"),
            live.token("jobcenter-aarhus", purpose="sickness-benefit-follow-up"),
            client,
        )
    asyncio.run(_seed_population(live.settings))
    problems: list[str] = []

    browser.get(f"{base}/web/")
    assert "Log ind" in browser.title
    problems += _axe(browser, "login")
    _shot(browser, "01-login")
    Select(browser.find_element(By.ID, "participant")).select_by_value("jobcenter-aarhus")
    browser.find_element(By.ID, "username").send_keys("sagsbehandler")
    browser.find_element(By.ID, "password").send_keys("demo-jobcenter-1")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()

    # click() returns before the next page has loaded: wait for it (bounded, not timed).
    WebDriverWait(browser, 30).until(lambda d: "Arbejdsliste" in d.title)
    problems += _axe(browser, "worklist")
    _shot(browser, "02-worklist")
    link = browser.find_element(By.CSS_SELECTOR, f"a[href='/web/borger/{ole.split('/')[1]}']")
    link.click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "ol.timeline"))
    timeline = browser.find_element(By.CSS_SELECTOR, "ol.timeline").text
    assert "Sygedagpengesag" in timeline
    assert "Genoptræningsplan" not in timeline
    problems += _axe(browser, "timeline-before-consent")
    _shot(browser, "03-timeline-before-consent")

    token = live.token("jobcenter-aarhus", purpose="sickness-benefit-follow-up")
    recorded = httpx.post(
        f"{live.fhir_base}/Consent",
        json=consent(ole),
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert recorded.status_code == 201, recorded.text
    browser.refresh()
    timeline = browser.find_element(By.CSS_SELECTOR, "ol.timeline").text
    assert "Genoptræningsplan" in timeline
    assert f"Consent/{recorded.json()['id']}" in timeline
    problems += _axe(browser, "timeline-after-consent")
    _shot(browser, "04-timeline-after-consent")

    browser.find_element(By.LINK_TEXT, "Nøgletal").click()
    WebDriverWait(browser, 30).until(lambda d: "Nøgletal" in d.title)
    browser.get(f"{base}/web/noegletal?maaned=2026-11")
    chart = browser.find_element(By.CSS_SELECTOR, "figure.chart svg")
    assert chart.size["width"] > 200 and chart.size["height"] > 100
    assert "Tilgang af sager" in browser.find_element(By.TAG_NAME, "table").text
    problems += _axe(browser, "figures")
    _shot(browser, "05-figures")

    # Keyboard: the skip link is the first stop and leads to the content.
    body = browser.find_element(By.TAG_NAME, "body")
    from selenium.webdriver.common.keys import Keys

    body.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Gå til indhold"
    assert problems == [], "\n".join(problems)

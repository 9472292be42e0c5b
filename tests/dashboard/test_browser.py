"""The dashboard in a real headless Chromium (Selenium), served by uvicorn,
with a real worker process: filter failed jobs, open one, retry it and watch
it succeed without a reload, replay a dead letter, see a live update.

Skipped without /usr/bin/chromium and /usr/bin/chromedriver, unless
PGJOBS_TEST_REQUIRE_CHROMIUM=1 (CI), which makes that a failure.
PGJOBS_TEST_SCREENSHOTS_DIR=docs/dashboard saves a screenshot of each page.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn

from pgjobs import App, Settings
from pgjobs.dashboard import create_app
from pgjobs.scheduling import schedules
from tests.support import ROOT, rows, run_worker, wait_for
from tests.support.apps.dashboard import register

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt install chromium chromium-driver)"
        if os.environ.get("PGJOBS_TEST_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [
        *FLAGS,
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1360,900",
    ]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(settings: Settings) -> Iterator[str]:
    """The dashboard on a real uvicorn in a thread; its base URL."""
    live = settings.model_copy(update={"events_poll_interval": 0.2})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(live),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 15, "uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


class Screens:
    def __init__(self, driver: Any) -> None:
        self.driver = driver
        folder = os.environ.get("PGJOBS_TEST_SCREENSHOTS_DIR")
        self.folder = (ROOT / folder) if folder else None

    def save(self, name: str) -> None:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(self.folder / f"{name}.png"))


def status_of(db_url: str, job_id: int) -> str:
    return str(
        rows(db_url, f"SELECT status FROM procrastinate_jobs WHERE id = {job_id}")[0][0]
    )


def test_operator_flow_in_chromium(
    browser: Any,
    served: str,
    settings: Settings,
    db_url: str,
    tmp_path: Path,
    worker_processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    from selenium.common.exceptions import (
        NoAlertPresentException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    app = register(App(settings=settings))
    markers = [tmp_path / "m0", tmp_path / "m1"]
    with psycopg.connect(db_url) as conn:
        failed = [app.enqueue(conn, "dash.flaky", {"marker": str(m)}) for m in markers]
        for n in range(5):
            app.enqueue(conn, "dash.ok", {"n": n})
        conn.execute(
            "INSERT INTO pgjobs.breakers (name, state, failure_threshold, recovery_window, "
            "success_threshold, failure_count, opened_at, reopens_at, last_error) VALUES "
            "('payments-api', 'open', 5, '5 minutes', 1, 5, now(), now() + interval '5 minutes', "
            "'ConnectionError: api down')"
        )
    asyncio.run(run_worker(app))
    assert [status_of(db_url, i) for i in failed] == ["failed", "failed"]  # type: ignore[arg-type]
    schedules.add_schedule(db_url, app, "nightly-report", "dash.ok", cron="0 3 * * *")
    worker_processes("--app", "tests.support.apps.dashboard.app", "-c", "2")
    # Live sections are swapped in place: look elements up again on each try.
    wait = WebDriverWait(
        browser,
        20,
        poll_frequency=0.1,
        ignored_exceptions=[StaleElementReferenceException],
    )
    screens = Screens(browser)

    def shows(element_id: str, text: str) -> None:
        wait.until(lambda d: text in d.find_element(By.ID, element_id).text)

    def click(by: str, value: str) -> None:
        def clicked(d: Any) -> bool:
            d.find_element(by, value).click()
            return True

        wait.until(clicked)

    def no_alert() -> bool:
        try:
            browser.switch_to.alert  # noqa: B018
        except NoAlertPresentException:
            return True
        return False

    # Overview: queues, health (two new dead letters), throughput, events.
    browser.get(served + "/")
    assert "pgjobs" in browser.title
    shows("health", "new_dead_letters")
    shows("health", "task dash.flaky")
    assert browser.find_elements(By.CSS_SELECTOR, "#throughput svg rect")
    screens.save("overview")

    # Jobs, filtered to the failed ones.
    browser.find_element(By.LINK_TEXT, "Jobs").click()
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("failed")
    browser.find_element(By.ID, "apply-filters").click()
    wait.until(lambda d: "status=failed" in d.current_url)
    wait.until(
        lambda d: (
            sorted(int(a.text) for a in d.find_elements(By.CSS_SELECTOR, "a.job-link"))
            == sorted(failed)
        )  # type: ignore[type-var]
    )
    shows("job-count", "2 matching job(s)")
    screens.save("jobs-failed")

    # One failed job: its error (escaped, shown as text, never run), then retry.
    job_id = failed[0]
    click(By.LINK_TEXT, str(job_id))
    wait.until(lambda d: d.find_element(By.ID, "job-status").text == "failed")
    shows("job-state", "ValueError: <script>alert('pwned')</script> marker")
    assert no_alert()
    screens.save("job-failed")
    markers[0].touch()
    click(By.XPATH, "//button[text()='Retry']")
    wait.until(lambda d: "done=" in d.current_url)
    shows("notice", f"Done: retry job {job_id}")
    browser.execute_script("window.pgjobsNoReload = 42;")
    wait.until(lambda d: d.find_element(By.ID, "job-status").text == "succeeded")
    assert (
        browser.execute_script("return window.pgjobsNoReload;") == 42
    )  # live, no reload
    assert status_of(db_url, job_id) == "succeeded"  # type: ignore[arg-type]
    wait.until(lambda d: d.find_element(By.ID, "timeline").text.count("started") == 2)
    shows("timeline", "retried")
    screens.save("job-retried")

    # Dead letters: the other job's letter, replayed as a new job that runs.
    markers[1].touch()
    browser.find_element(By.LINK_TEXT, "Dead letters").click()
    screens.save("dead-letters")
    click(By.CSS_SELECTOR, "#letters button.primary")
    wait.until(lambda d: "done=" in d.current_url)
    [(replay_job,)] = rows(
        db_url,
        f"SELECT replay_job_id FROM pgjobs.dead_letters WHERE job_id = {failed[1]}",
    )
    wait_for(
        lambda: status_of(db_url, replay_job) == "succeeded", 20, "the replayed job"
    )
    shows("letter-groups", "No pending dead letter.")
    browser.get(f"{served}/jobs/{replay_job}")
    wait.until(lambda d: d.find_element(By.ID, "job-status").text == "succeeded")

    # A live update on the overview: a job enqueued now appears without reload.
    browser.get(served + "/")
    browser.execute_script("window.pgjobsNoReload = 7;")
    time.sleep(0.5)  # the page's event stream is open
    with psycopg.connect(db_url) as conn:
        fresh = app.enqueue(conn, "dash.ok", {"n": 99})
    wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"#events a[href='/jobs/{fresh}']")
    )
    assert browser.execute_script("return window.pgjobsNoReload;") == 7
    shows("live-stamp", "live")
    screens.save("overview-live")

    # The other pages, and the audit trail of what was done above.
    for name, path, expected in [
        ("tasks", "/tasks", "dash.ok"),
        ("workers", "/workers", "Stalled jobs"),
        ("schedules", "/schedules", "nightly-report"),
        ("breakers", "/breakers", "payments-api"),
        ("queues", "/queues", "default"),
        ("audit", "/audit", "dead letter"),
    ]:
        browser.get(served + path)
        shows("content", expected)
        screens.save(name)
    shows("audit", f"retry job {job_id}")
    shows("audit", "replay dead letter")
    assert no_alert()
    logs = browser.get_log("browser") if hasattr(browser, "get_log") else []
    assert not [
        entry for entry in logs if "Content Security Policy" in entry.get("message", "")
    ]

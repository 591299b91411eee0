"""The dashboard in a real headless browser: Debian's chromium driven through chromedriver by
Selenium (nothing downloads a browser). Log in with a password, watch a submitted batch appear
and reach DONE, follow its results links, see nothing of another project, and log in as an
administrator with a token to see usage and the audit log. The screenshots are kept in
`test-artifacts/` (TWEEZER_TEST_ARTIFACTS to put them elsewhere)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from core.accounts import Accounts
from core.roles import Role
from core.sessions import Sessions
from core.timefmt import now_us
from tests import sequences
from tests.conftest import Account

SEQ = sequences.fixed()
#: A tag a careless page would turn into markup.
HOSTILE_TAG = "<img src=x onerror=\"document.title='pwned'\">"
ARTIFACTS = Path(os.environ.get("TWEEZER_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture(scope="module")
def board(start_cluster):
    return start_cluster(qpus={"EMU_FREE": 1})


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, "Debian's chromium and chromium-driver: run `make test`"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1500,1100",
        "--disable-gpu",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def person(cluster, admin: bool = False) -> tuple[Account, str]:
    """A user with a password, in a project of their own."""
    accounts = Accounts(cluster.client, cluster.settings.namespace)
    password = secrets.token_urlsafe(12)
    user = accounts.create_user(f"ada-{secrets.token_hex(3)}", password, admin=admin)
    project = accounts.create_project(f"optics-{secrets.token_hex(3)}")
    accounts.add_member(project.id, user, Role.ADMIN)
    return Account(user, project.id, accounts.issue_token(user).token), password


def wait(driver: WebDriver, condition, timeout_s: float = 60):
    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(lambda _: condition())


def status_of(driver: WebDriver, batch_id: str) -> str | None:
    rows = driver.find_elements(By.CSS_SELECTOR, f'#batches tr[data-batch-id="{batch_id}"]')
    return rows[0].find_element(By.CSS_SELECTOR, "td.status").text if rows else None


def test_log_in_watch_a_batch_reach_done_and_open_its_results(board, browser):
    me, password = person(board)
    stranger, _ = person(board)
    theirs = board.sdk(stranger).create_batch(SEQ, [{"runs": 3}], device_type="EMU_FREE", wait=True)

    page = requests.get(board.base_url + "/dashboard", timeout=10)
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    browser.get(board.base_url + "/dashboard")
    browser.find_element(By.ID, "username").send_keys(me.user_id)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login-button").click()
    wait(browser, lambda: browser.find_element(By.ID, "app").is_displayed())
    wait(browser, lambda: browser.find_element(By.ID, "who").text == me.user_id)
    assert browser.execute_script("return sessionStorage.getItem('tweezer.token')")

    batch = board.sdk(me).create_batch(
        SEQ, [{"runs": 20}, {"runs": 30}], device_type="EMU_FREE", tags=[HOSTILE_TAG]
    )
    wait(browser, lambda: status_of(browser, batch.id) is not None)  # it appears ...
    wait(browser, lambda: status_of(browser, batch.id) == "DONE")  # ... and finishes
    row = browser.find_element(By.CSS_SELECTOR, f'#batches tr[data-batch-id="{batch.id}"]')
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    assert cells[2] == "EMU_FREE" and cells[3] == "2 / 2" and cells[6] == HOSTILE_TAG
    # Shown as text, never as markup: no image, the script in it never ran.
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.title == "Tweezer"
    # Another project's batch is nowhere on the page.
    assert theirs.id not in browser.page_source
    assert stranger.project_id not in browser.page_source

    row.find_element(By.CSS_SELECTOR, "button.results").click()
    links = wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#results-links a"))
    assert len(links) == 2
    for link in links:
        href = link.get_attribute("href")
        assert href.startswith(board.base_url + "/core-fast/api/v1/results/")
        assert requests.get(href, timeout=10).status_code == 200  # the link is the key
    # The QPU board names the QPU and its worker.
    qpu = browser.find_element(By.CSS_SELECTOR, '#qpus tr[data-qpu="EMU_FREE-0"]')
    assert "1 alive" in qpu.text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    assert not browser.find_element(By.ID, "admin").is_displayed()  # not an administrator


def test_an_administrator_logs_in_with_a_token_and_sees_usage_and_the_audit_log(board, browser):
    admin, _ = person(board, admin=True)
    user, _ = person(board)
    board.sdk(user).create_batch(SEQ, [{"runs": 2}], device_type="EMU_FREE", wait=True)
    browser.get(board.base_url + "/dashboard")
    browser.find_element(By.ID, "token").send_keys(admin.token)
    browser.find_element(By.ID, "login-button").click()
    wait(browser, lambda: browser.find_element(By.ID, "admin").is_displayed())
    usage = wait(
        browser,
        lambda: browser.find_elements(
            By.CSS_SELECTOR, f'#usage tr[data-project-id="{user.project_id}"]'
        ),
    )
    assert "EMU_FREE" in usage[0].text
    wait(browser, lambda: "batch.create" in browser.find_element(By.ID, "audit").text)
    assert "(administrator)" in browser.find_element(By.ID, "who").text
    # A Slurm job's session (qrmi pasqal-local) shows while it is held.
    sessions = Sessions(board.client, board.settings.namespace)
    held = sessions.open(user.user_id, 1001, user.project_id, "EMU_FREE", "777", now_us())
    shown = wait(
        browser,
        lambda: browser.find_elements(
            By.CSS_SELECTOR, f'#sessions tr[data-session-id="{held.id}"]'
        ),
    )
    assert shown[0].text.split()[:3] == ["777", user.user_id, "EMU_FREE"]
    sessions.close(held.id, now_us())
    wait(browser, lambda: held.id not in browser.page_source)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard-admin.png"))
    browser.find_element(By.ID, "logout").click()
    assert browser.find_element(By.ID, "login").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('tweezer.token')") is None


def test_a_bad_password_is_refused_on_the_page(board, browser):
    me, _ = person(board)
    browser.get(board.base_url + "/dashboard")
    browser.find_element(By.ID, "username").send_keys(me.user_id)
    browser.find_element(By.ID, "password").send_keys("wrong")
    browser.find_element(By.ID, "login-button").click()
    error = wait(browser, lambda: browser.find_element(By.ID, "login-error").text)
    assert error and not browser.find_element(By.ID, "app").is_displayed()

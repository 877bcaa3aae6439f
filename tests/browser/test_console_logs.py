"""The console's log screens in a real browser, checked against what the API answers: a site
admin searches the logs for an organisation made by this test (by title and model, then by its
change) and sees exactly the API's rows, newest first; opens the audit logs, the top API users
and the undelivered messages; verifies the audit log. A log search follows the live feed: an
entry made through the API appears without a reload. A user whose role lacks perm_audit is
refused the logs; a user whose role has it sees their own rows only."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from .console import (
    SITE_ADMIN_ROLE,
    USER_ROLE,
    api,
    check_screen,
    heading,
    login,
    make_user,
    page_url,
    unique,
)
from .support import wait_for

VERIFY_TIMEOUT_S = 180  # the verification walks the whole log (tens of seconds on this stack)


def api_log_ids(**filters: str) -> list[str]:
    """The API's own search (admin/logs/index, oldest first), as ids newest first."""
    query = "&".join(f"{k}={quote(v)}" for k, v in filters.items())
    rows: list[dict[str, Any]] = api("GET", f"/admin/logs/index?{query}")
    return sorted((r["Log"]["id"] for r in rows), key=int, reverse=True)


def page_ids(browser: Chrome) -> list[str]:
    return [str(tr.get_attribute("data-id"))
            for tr in browser.find_elements(By.CSS_SELECTOR, "table.logs tbody tr[data-id]")]


def search(browser: Chrome, **fields: str) -> None:
    browser.get(page_url("/admin/logs/index"))
    for name, value in fields.items():
        element = browser.find_element(By.ID, f"f-{name}")
        if not element.is_displayed():  # the search form is folded away until opened
            browser.find_element(By.CSS_SELECTOR, "details.search summary").click()
        element.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "form[role=search] button").click()
    wait_for(browser, lambda d: "title=" in d.current_url or "change=" in d.current_url)


def test_a_site_admin_searches_the_logs_and_verifies_the_audit_log(browser: Chrome) -> None:
    _, email, password = make_user(role_id=SITE_ADMIN_ROLE)
    name = unique("logs-org")
    api("POST", "/admin/organisations/add", {"name": name})
    # the audit log holds the addition once its consumer has it (the API waits, bounded)
    wanted = {"title": f"%{name}%", "model": "Organisation"}
    expected = wait_for(browser, lambda _d: api_log_ids(**wanted), timeout=30)

    login(browser, email, password, "/admin/logs/index")
    assert heading(browser) == "Logs"
    ids = page_ids(browser)
    assert len(ids) == 50 and ids == sorted(ids, key=int, reverse=True)  # newest first
    check_screen(browser, "logs-index")

    search(browser, title=name, model="Organisation")
    assert page_ids(browser) == expected
    titles = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "table.logs td.title")]
    assert titles and all(name in t for t in titles)
    check_screen(browser, "logs-search")
    # the table alone, as a live update fetches it (with the browser's session)
    fragment = httpx.get(
        page_url(f"/admin/logs/index?title={quote(name)}&model=Organisation&fragment=1"),
        headers={"Accept": "text/html"}, timeout=30,
        cookies={"MISP-session": browser.get_cookie("MISP-session")["value"]})
    assert fragment.status_code == 200 and "<header" not in fragment.text
    assert re.findall(r'<tr data-id="(\d+)"', fragment.text) == expected
    # a search by a field only the Log search has (its change) reads the other API path
    search(browser, change=name)
    assert page_ids(browser) == api_log_ids(change=f"%{name}%")
    assert expected[-1] in page_ids(browser)

    browser.get(page_url(f"/admin/audit_logs/index?model_title={quote(name)}"))
    assert heading(browser) == "Audit logs"
    assert page_ids(browser) == expected
    check_screen(browser, "audit-logs")

    browser.get(page_url("/console/logs/top_api_users?since=1d"))
    top = api("GET", "/api/v1/audit/top_api_users?since=1d")
    assert len(browser.find_elements(By.CSS_SELECTOR, "tbody tr")) == max(len(top), 1)
    check_screen(browser, "top-api-users")

    browser.get(page_url("/console/operator"))
    services = {tr.get_attribute("data-service")
                for tr in browser.find_elements(By.CSS_SELECTOR, "#undelivered tbody tr")}
    assert services == set(api("GET", "/servers/serverSettings/diagnostics")["services"])
    check_screen(browser, "operator")

    browser.get(page_url("/console/audit/verify"))
    browser.find_element(By.CSS_SELECTOR, "form[action='/console/audit/verify'] button").click()
    wait_for(browser, lambda d: "job=" in d.current_url)
    job_id = browser.current_url.rsplit("job=", 1)[1]

    browser.execute_script("window.consoleTestMarker = 'not reloaded'")

    def finished(driver: Chrome) -> str | None:  # the job's live updates, no reload
        status = driver.find_element(By.CSS_SELECTOR, "#verify-job .status").text
        return status if status in ("Completed", "Failed") else None

    assert WebDriverWait(browser, VERIFY_TIMEOUT_S, poll_frequency=0.5).until(finished) == \
        "Completed"
    assert browser.execute_script("return window.consoleTestMarker") == "not reloaded"
    message = browser.find_element(By.CSS_SELECTOR, "#verify-job .message").text
    job = api("GET", f"/api/v1/jobs/jobs/{job_id}")["Job"]
    assert (job["job_type"], job["job_status"]) == ("audit_verify", "Completed")
    assert job["message"].startswith("Audit log verified: ")
    assert message == "verified " + job["message"]
    check_screen(browser, "audit-verify")


def test_the_logs_need_perm_audit(phone: Chrome) -> None:
    """On a phone's screen."""
    browser = phone
    role = api("POST", "/admin/roles/add", {"name": unique("no-audit"), "permission": "1"})
    assert role["Role"]["perm_audit"] is False
    _, email, password = make_user(role_id=int(role["Role"]["id"]))
    login(browser, email, password, "/admin/logs/index")
    assert heading(browser) == "Not allowed"
    assert browser.find_elements(By.LINK_TEXT, "Logs") == []
    check_screen(browser, "logs-refused")

    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait_for(browser, lambda d: "/users/login" in d.current_url)
    user_id, email, password = make_user(role_id=USER_ROLE)  # MISP's User role has perm_audit
    login(browser, email, password, "/admin/logs/index")
    assert heading(browser) == "Logs"
    emails = {td.text for td in browser.find_elements(By.CSS_SELECTOR,
                                                      "table.logs tbody td:nth-child(3)")}
    assert emails == {email}  # their own rows only (their login at least)
    assert all(r["Log"]["user_id"] == str(user_id) for r in api(
        "GET", f"/admin/logs/index?id={'||'.join(page_ids(browser))}"))
    check_screen(browser, "logs-own-phone")


def test_the_log_search_shows_a_new_entry_without_a_reload(browser: Chrome) -> None:
    _, email, password = make_user(role_id=SITE_ADMIN_ROLE)
    name = unique("live-org")
    login(browser, email, password, f"/admin/logs/index?title={quote(name)}&model=Organisation")
    assert page_ids(browser) == []
    wait_for(browser, lambda d: d.find_element(By.ID, "log-table").get_attribute(
        "data-live-state") == "open", timeout=10, message="the live stream did not connect")
    browser.execute_script("window.consoleTestMarker = 'not reloaded'")

    api("POST", "/admin/organisations/add", {"name": name})
    wait_for(browser, page_ids, timeout=20, message="the new entry did not appear")
    assert browser.execute_script("return window.consoleTestMarker") == "not reloaded"
    assert page_ids(browser) == api_log_ids(title=f"%{name}%", model="Organisation")
    check_screen(browser, "logs-live")

"""The console's server settings in a real browser: a site admin opens the settings tabs, edits a
setting inline (the API then holds the new value) and sees MISP's refusal of a bad value beside the
field (the API keeps the old one), opens the diagnostics (every service's database schema, as the
API's report holds it), downloads the report, and opens the workers tab, where starting a worker
answers with the API's own message. (A user who is no site admin gets the API's refusal as a
page, as every page does: test_console_login.)"""

from __future__ import annotations

import json

import httpx
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from .console import (
    SITE_ADMIN_ROLE,
    admin_headers,
    api,
    check_screen,
    heading,
    login,
    make_user,
    page_url,
)
from .support import wait_for

# A numeric setting nothing else in the suite depends on (MISP caps an event's correlations).
SETTING = "MISP.max_correlations_per_event"


def setting_value(name: str) -> object:
    return api("GET", f"/servers/getSetting/{name}")["value"]


def refusal(name: str, value: str) -> str:
    """The API's message for a value it refuses (it keeps the old value)."""
    answer = httpx.post(page_url(f"/servers/serverSettingsEdit/{name}"), json={"value": value},
                        headers=admin_headers(), timeout=30)
    assert answer.status_code == 403
    return str(answer.json()["message"])


def save_setting(browser: Chrome, name: str, value: str) -> None:
    field = browser.find_element(By.ID, f"v-{name}")
    field.clear()
    field.send_keys(value)
    browser.find_element(
        By.CSS_SELECTOR, f"form[action='/servers/serverSettingsEdit/{name}'] button").click()


def test_a_site_admin_edits_settings_and_reads_the_diagnostics(browser: Chrome) -> None:
    _, email, password = make_user(role_id=SITE_ADMIN_ROLE)
    login(browser, email, password, "/servers/serverSettings")
    assert heading(browser) == "Server settings"
    check_screen(browser, "settings-overview")

    tabs = api("GET", "/servers/serverSettings/MISP")["tabs"]
    for tab in ("Plugin", "Security", "MISP"):  # MISP's last: its setting is edited next
        browser.find_element(By.CSS_SELECTOR, f".tabs a[href='/servers/serverSettings/{tab}']"
                             ).click()
        wait_for(browser, lambda d, t=tab: heading(d) == f"{t} settings")
        rows = browser.find_elements(By.CSS_SELECTOR, "table.settings tbody tr")
        assert len(rows) == tabs[tab]["count"]
        # the settings of features outside this product carry the mark, as the API says
        listed = api("GET", f"/servers/serverSettings/{tab}")["finalSettings"]
        marked = set(browser.execute_script(
            "return [...document.querySelectorAll('table.settings tbody tr')]"
            ".filter(r => r.querySelector('.badge.not-used')).map(r => r.id)"))
        assert marked == {f"s-{s['setting']}" for s in listed if s["used_here"] is False}
        assert (tab == "Plugin") == (len(marked) == len(rows))
        check_screen(browser, f"settings-{tab.lower()}")

    original = setting_value(SETTING)
    changed = str(int(original or 0) + 17)
    try:
        save_setting(browser, SETTING, changed)
        flash = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".flash.ok"),
                         timeout=15)
        assert flash.text == f"{SETTING}: Field updated"
        assert setting_value(SETTING) == int(changed)
        assert browser.find_element(By.ID, f"v-{SETTING}").get_attribute("value") == changed

        save_setting(browser, SETTING, "not a number")
        error = wait_for(browser, lambda d: d.find_element(By.ID, f"e-{SETTING}"), timeout=15)
        assert error.text == refusal(SETTING, "not a number")
        field = browser.find_element(By.ID, f"v-{SETTING}")
        assert field.get_attribute("aria-invalid") == "true"
        assert field.get_attribute("value") == "not a number"
        assert setting_value(SETTING) == int(changed)
        check_screen(browser, "settings-refused-value")
    finally:
        api("POST", f"/servers/serverSettingsEdit/{SETTING}", {"value": original})
    assert setting_value(SETTING) == original

    browser.get(page_url("/servers/serverSettings/diagnostics"))
    assert heading(browser) == "Diagnostics"
    check_screen(browser, "settings-diagnostics")
    link = browser.find_element(By.CSS_SELECTOR,
                                "a.button[href='/servers/serverSettings/download']")
    session = browser.get_cookie("MISP-session")
    assert session is not None
    answer = httpx.get(link.get_attribute("href") or "", timeout=30,
                       headers={"Accept": "text/html"},
                       cookies={"MISP-session": session["value"]})
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="MISP.report.json"'
    report = json.loads(answer.text)
    assert SETTING in {r["setting"] for r in report["finalSettings"]}
    # the page shows each service's schema as the API's report holds it (dbSchemaDiagnostic)
    shown = {row.find_element(By.CSS_SELECTOR, "td").text: row.find_elements(
        By.CSS_SELECTOR, "td")[2].text
        for row in browser.find_elements(By.CSS_SELECTOR, "#db-schema tbody tr")}
    assert shown == {name: s["actual_db_version"]
                     for name, s in report["dbSchemaDiagnostics"].items()}
    assert set(shown) >= {"identity", "orgs", "audit", "jobs", "mailer", "settings"}
    # MISP's expired-session counter, and its purge (a job) behind a confirmation
    assert browser.find_element(By.ID, "expired-sessions").text == str(report["sessionCount"])
    browser.find_element(By.CSS_SELECTOR, "form[action='/servers/purgeSessions'] button").click()
    wait_for(browser, lambda d: d.switch_to.alert).accept()
    purged = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".flash.ok"), 15)
    assert purged.text.startswith("Expired sessions are being purged (job ")

    browser.get(page_url("/servers/serverSettings/workers"))
    assert heading(browser) == "Workers"
    workers = api("GET", "/servers/getWorkers")
    queues = {h.get_attribute("id") for h in browser.find_elements(By.CSS_SELECTOR,
                                                                    "section.queue h2")}
    assert queues == {f"q-{q}" for q, entry in workers.items() if isinstance(entry, dict)}
    check_screen(browser, "settings-workers")
    browser.find_element(By.CSS_SELECTOR, "form[action='/servers/startWorker/default'] button"
                         ).click()
    flash = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".flash.ok"))
    assert flash.text.startswith("Worker start for default requested")


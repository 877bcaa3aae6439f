"""The console's import-rule screens in a real browser, each change checked in what the API then
holds: a site admin adds, edits and deletes an event blocklist entry, adds an import regexp and
tries a value in the regexps' test box, adds, edits and deletes (from its confirmation page) a
signature allowlist entry; a plain user is refused the lists."""

from __future__ import annotations

import re
import uuid
from typing import Any

from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

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


def blocklisted(event_uuid: str) -> list[dict[str, Any]]:
    return [r for r in api("GET", f"/eventBlocklists/index/event_uuid:{event_uuid}")
            if r["event_uuid"] == event_uuid]


def entries(path: str, model: str, **match: str) -> list[dict[str, Any]]:
    rows = [r[model] for r in api("GET", path)]
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def submit(browser: Chrome, fields: dict[str, str], button: str = "main form button.primary"
           ) -> None:
    for name, value in fields.items():
        element = wait_for(browser, lambda d, n=name: d.find_element(By.ID, f"f-{n}"))
        element.clear()
        element.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, button).click()


def flash(browser: Chrome) -> str:
    return str(wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "p.flash"),
                        timeout=15).text)


def test_a_site_admin_manages_the_import_rules(browser: Chrome) -> None:
    _, email, password = make_user(role_id=SITE_ADMIN_ROLE)
    event_uuid = str(uuid.uuid4())
    name = unique("import")
    regexp_ids: list[str] = []
    allowed_ids: list[str] = []
    try:
        # an event blocklist entry: added, edited, deleted, each as the API then holds it
        login(browser, email, password, "/eventBlocklists/add")
        assert heading(browser) == "Add blocklist entry"
        check_screen(browser, "event-blocklist-add")
        submit(browser, {"uuids": event_uuid, "comment": "from the console",
                         "event_info": name})
        assert flash(browser).startswith("Done. Added 1 new entries to the blocklist.")
        [entry] = blocklisted(event_uuid)
        assert (entry["comment"], entry["event_info"]) == ("from the console", name)
        row = browser.find_element(By.CSS_SELECTOR, f"tr[data-key='{event_uuid}']")
        check_screen(browser, "event-blocklist-index")
        row.find_element(By.CSS_SELECTOR, "td.row-actions a").click()
        wait_for(browser, lambda d: heading(d) == "Edit blocklist entry")
        assert browser.find_element(By.ID, "f-event_info").get_attribute("value") == name
        submit(browser, {"comment": "edited in the console"})
        assert flash(browser) == "The blocklist entry was saved."
        assert [e["comment"] for e in blocklisted(event_uuid)] == ["edited in the console"]
        browser.find_element(
            By.CSS_SELECTOR, f"tr[data-key='{event_uuid}'] form button").click()
        browser.switch_to.alert.accept()  # the data-confirm question
        assert flash(browser) == "Blocklist entry removed"
        assert blocklisted(event_uuid) == []

        # a bad uuid is MISP's message on the form, nothing added
        browser.get(page_url("/eventBlocklists/add"))
        submit(browser, {"uuids": "not-a-uuid-but-36-characters-long-xx"})
        error = wait_for(browser, lambda d: d.find_element(By.ID, "e-uuids"), timeout=15)
        assert error.text == "Invalid UUID: not-a-uuid-but-36-characters-long-xx"
        assert heading(browser) == "Add blocklist entry"  # the form again, not a refusal
        check_screen(browser, "event-blocklist-refused")

        # a regexp RE2 cannot run is refused with the reason, on the form
        browser.get(page_url("/admin/regexp/add"))
        submit(browser, {"regexp": f"/({name})\\1/"})
        error = wait_for(browser, lambda d: d.find_element(By.ID, "e-regexp"), timeout=15)
        assert error.text.startswith("Invalid regex: ")
        assert entries("/admin/regexp/index", "Regexp", regexp=f"/({name})\\1/") == []
        check_screen(browser, "regexp-refused")

        # an import regexp, then the test box: the value is rewritten by exactly that regexp
        browser.get(page_url("/admin/regexp/add"))
        submit(browser, {"regexp": f"/{name}-(\\d+)/i", "replacement": "masked-$1"})
        assert flash(browser) == "The regexp was added."
        [regexp] = entries("/admin/regexp/index", "Regexp", regexp=f"/{name}-(\\d+)/i")
        regexp_ids.append(regexp["id"])
        assert (regexp["replacement"], regexp["type"]) == ("masked-$1", "ALL")
        browser.get(page_url("/admin/regexp/index"))
        submit(browser, {"value": f"x {name.upper()}-42 y"}, "form[action='/admin/regexp/test'] "
                                                             "button")
        result = wait_for(browser, lambda d: d.find_element(By.ID, "try-result"), timeout=15)
        assert result.find_element(By.CSS_SELECTOR, ".stored").text == "x masked-42 y"
        applied = result.find_element(By.CSS_SELECTOR, ".applied").text
        assert regexp["id"] in re.split(r",\s*", applied)
        check_screen(browser, "regexp-test")

        # a signature allowlist entry
        browser.get(page_url("/admin/allowedlists/add"))
        pattern = f"/{name}\\.example$/i"
        submit(browser, {"name": pattern})
        assert flash(browser) == "The allowlist entry was added."
        allowed_ids += [e["id"] for e in entries("/admin/allowedlists/index", "Allowedlist",
                                                 name=pattern)]
        assert len(allowed_ids) == 1
        assert browser.find_elements(By.CSS_SELECTOR, f"tr[data-key='{allowed_ids[0]}']")
        check_screen(browser, "allowedlist-index")
        # edited, then deleted from its confirmation page (no script needed)
        browser.get(page_url(f"/admin/allowedlists/edit/{allowed_ids[0]}"))
        assert browser.find_element(By.ID, "f-name").get_attribute("value") == pattern
        submit(browser, {"name": f"/{name}\\.example\\.org$/"})
        assert flash(browser) == "The allowlist entry was saved."
        assert [e["name"] for e in entries("/admin/allowedlists/index", "Allowedlist",
                                           id=allowed_ids[0])] == [f"/{name}\\.example\\.org$/"]
        browser.get(page_url(f"/admin/allowedlists/delete/{allowed_ids[0]}"))
        assert heading(browser) == "Delete allowlist entry"
        check_screen(browser, "allowedlist-delete")
        browser.find_element(By.CSS_SELECTOR, "main button.danger").click()
        assert flash(browser).startswith("Allowedlist")
        assert entries("/admin/allowedlists/index", "Allowedlist", id=allowed_ids.pop()) == []
    finally:
        for regexp_id in regexp_ids:
            api("POST", f"/admin/regexp/delete/{regexp_id}")
        for allowed_id in allowed_ids:
            api("POST", f"/admin/allowedlists/delete/{allowed_id}")
        for entry in blocklisted(event_uuid):
            api("POST", f"/eventBlocklists/delete/{entry['id']}")


def test_a_plain_user_is_refused_the_import_rules(browser: Chrome) -> None:
    _, email, password = make_user(role_id=USER_ROLE)
    login(browser, email, password, "/orgBlocklists/index")
    assert heading(browser) == "Not allowed"
    assert browser.find_elements(By.LINK_TEXT, "Import rules") == []
    check_screen(browser, "org-blocklist-refused")
    browser.get(page_url("/admin/regexp/add"))
    assert heading(browser) == "Not allowed"
    check_screen(browser, "regexp-add-refused")

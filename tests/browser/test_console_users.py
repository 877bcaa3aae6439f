"""The console's user screens in a real browser, against the running stack: a site admin adds a
user through the form (the key shown once works), edits them, meets MISP's validation message,
adds an authkey with an expiry, allowed IPs and read-only, resets the user's key, contacts them
(the mail reaches the local mail catcher) and deletes them; each step is checked in what the API
then holds. A self-registration is accepted and another discarded from the inbox. An org admin
sees only their own organisation's users."""

from __future__ import annotations

import email
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from ..e2e.hkp import Keys, keyserver_setting, make_keys, serve
from .console import (
    GATEWAY,
    HOST_ORG,
    ORG_ADMIN_ROLE,
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

WAIT_S = 30  # a page after a form: the stack may be busy with other suites
MAIL_DIR = Path(os.environ.get("MISP_STATE_DIR", ".local")) / "mail"
SELF_REGISTRATION = "Security.allow_self_registration"


def _status(path: str, key: str) -> tuple[int, Any]:
    """A GET with another key than the site admin's: (status, body)."""
    answer = httpx.get(f"{GATEWAY}{path}", timeout=30,
                       headers={"Authorization": key, "Accept": "application/json"})
    return answer.status_code, answer.json()


def _admin_status(path: str) -> int:
    answer = httpx.get(f"{GATEWAY}{path}", timeout=30,
                       headers={"Authorization": (Path(os.environ.get("MISP_STATE_DIR", ".local"))
                                                  / "admin.authkey").read_text().strip(),
                                "Accept": "application/json"})
    return answer.status_code


def _wait(driver: Chrome, condition: Any) -> Any:
    return wait_for(driver, condition, timeout=WAIT_S)


def _submit(driver: Chrome, form: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"{form} button[type=submit]").click()


def _confirm_click(driver: Chrome, selector: str) -> None:
    """Click a button whose form asks `data-confirm`, and accept the question."""
    driver.find_element(By.CSS_SELECTOR, selector).click()
    _wait(driver, lambda d: d.switch_to.alert).accept()


def _shown_key(driver: Chrome) -> str:
    key = _wait(driver, lambda d: d.find_element(By.ID, "new-authkey")).text.strip()
    assert len(key) == 40 and key.isalnum(), key
    return key


def _mail(to: str, subject: str, timeout_s: float = 20) -> email.message.EmailMessage:
    """The mail the catcher wrote for `to` whose subject is or ends with `subject`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in sorted(MAIL_DIR.glob("*.eml"), reverse=True)[:200]:
            raw = path.read_bytes()
            if to.encode() not in raw:
                continue
            message = email.message_from_bytes(raw, policy=policy.default)
            if str(message["Subject"]).endswith(subject) and to in str(message["To"]):
                assert isinstance(message, email.message.EmailMessage)
                return message
        time.sleep(0.2)
    raise AssertionError(f"no mail to {to} with subject {subject!r} in {MAIL_DIR}")


def test_a_site_admin_adds_edits_keys_contacts_and_deletes_a_user(browser: Chrome) -> None:
    _, admin_email, password = make_user(role_id=SITE_ADMIN_ROLE)
    login(browser, admin_email, password)
    _wait(browser, lambda d: heading(d) == "Administration")
    browser.get(page_url(f"/admin/users/index?searchrole={SITE_ADMIN_ROLE}&value={admin_email}"))
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "tbody td a")] == [admin_email]
    assert Select(browser.find_element(By.ID, "f-searchrole")) \
        .first_selected_option.get_attribute("value") == str(SITE_ADMIN_ROLE)
    check_screen(browser, "users-index-filters")

    # Add: the form, MISP's validation message by the field, then a user and its key once.
    browser.get(page_url("/admin/users/add"))
    assert heading(browser) == "Add user"  # checked below, with MISP's message on it
    browser.find_element(By.ID, "f-email").send_keys(admin_email)
    Select(browser.find_element(By.ID, "f-org_id")).select_by_value(str(HOST_ORG))
    Select(browser.find_element(By.ID, "f-role_id")).select_by_value(str(USER_ROLE))
    _submit(browser, "form.card")
    error = _wait(browser, lambda d: d.find_element(By.ID, "e-email"))
    assert error.text == "An account with this email address already exists."
    check_screen(browser, "users-add-refused")

    address = f"{unique('added')}@console.test"
    field = browser.find_element(By.ID, "f-email")
    field.clear()
    field.send_keys(address)
    browser.find_element(By.ID, "f-notify").click()  # MISP's "Send credentials automatically"
    _submit(browser, "form.card")
    added_key = _shown_key(browser)
    assert heading(browser) == "User added"
    assert browser.find_element(By.CSS_SELECTOR, ".flash.info").text \
        == "Welcome e-mail: E-mails sent to 1 recipient(s)."
    _mail(address, "MISP] New user registration")
    check_screen(browser, "users-added")
    status, me = _status("/users/view/me", added_key)
    assert status == 200 and me["User"]["email"] == address
    user_id = int(me["User"]["id"])
    assert me["User"]["org_id"] == str(HOST_ORG) and me["User"]["role_id"] == str(USER_ROLE)
    # shown once: the user's page holds only the key's ends
    browser.find_element(By.LINK_TEXT, "View the user").click()
    _wait(browser, lambda d: f"/admin/users/view/{user_id}" in d.current_url)
    assert added_key not in browser.page_source
    assert added_key[:4] in browser.page_source
    check_screen(browser, "users-view")

    # Edit: the API holds the change.
    browser.find_element(By.LINK_TEXT, "Edit").click()
    _wait(browser, lambda d: heading(d) == "Edit user")
    check_screen(browser, "users-edit")
    sid = browser.find_element(By.ID, "f-nids_sid")
    sid.clear()
    sid.send_keys("7654321")
    browser.find_element(By.ID, "f-termsaccepted").click()
    _submit(browser, "form.card")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".flash.ok"))
    assert f"/admin/users/view/{user_id}" in browser.current_url
    user = api("GET", f"/admin/users/view/{user_id}")["User"]
    assert (user["nids_sid"], user["termsaccepted"], user["email"]) == ("7654321", True, address)

    # An authkey with an expiry, allowed IPs and read-only.
    browser.get(page_url(f"/auth_keys/add/{user_id}"))
    check_screen(browser, "authkeys-add")
    comment = unique("key")
    day = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d")
    browser.find_element(By.ID, "f-comment").send_keys(comment)
    browser.execute_script("arguments[0].value = arguments[1]",
                           browser.find_element(By.ID, "f-expiration"), day)
    browser.find_element(By.ID, "f-allowed_ips").send_keys("127.0.0.1\n10.0.0.0/8")
    browser.find_element(By.ID, "f-read_only").click()
    _submit(browser, "form.card")
    new_key = _shown_key(browser)
    assert "copy it now" in browser.find_element(By.TAG_NAME, "main").text.lower()
    check_screen(browser, "authkeys-added")
    keys = [k["AuthKey"] for k in api("GET", f"/auth_keys/index/{user_id}")]
    made = [k for k in keys if k["comment"] == comment]
    assert len(made) == 1
    assert made[0]["read_only"] is True
    assert made[0]["allowed_ips"] == ["127.0.0.1/32", "10.0.0.0/8"]
    midnight = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    assert int(made[0]["expiration"]) == int(midnight.timestamp())
    assert (made[0]["authkey_start"], made[0]["authkey_end"]) == (new_key[:4], new_key[-4:])
    browser.get(page_url(f"/auth_keys/index/{user_id}"))
    assert comment in browser.find_element(By.TAG_NAME, "table").text
    check_screen(browser, "authkeys-index")
    browser.get(page_url(f"/auth_keys/view/{made[0]['id']}"))
    assert "10.0.0.0/8" in browser.find_element(By.CSS_SELECTOR, "dl.details").text
    check_screen(browser, "authkeys-view")
    browser.find_element(By.LINK_TEXT, "Edit").click()
    _wait(browser, lambda d: heading(d).startswith("Edit auth key"))
    assert browser.find_element(By.ID, "f-expiration").get_attribute("value") == day
    browser.find_element(By.ID, "f-comment").send_keys(" edited")
    check_screen(browser, "authkeys-edit")
    _submit(browser, "form.card")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".flash.ok"))
    edited = api("GET", f"/auth_keys/view/{made[0]['id']}")["AuthKey"]
    assert (edited["comment"], edited["read_only"], edited["expiration"]) == (
        f"{comment} edited", True, made[0]["expiration"])

    # Reset the user's key: a new one shown once works, the one shown at the add no longer.
    browser.get(page_url(f"/admin/users/view/{user_id}"))
    _confirm_click(browser, f"form[action='/users/resetauthkey/{user_id}'] button")
    reset_key = _shown_key(browser)
    check_screen(browser, "users-resetauthkey")
    assert reset_key != added_key
    assert _status("/users/view/me", reset_key)[0] == 200
    assert _status("/users/view/me", added_key)[0] == 403

    # Contact the user: the mail reaches the catcher.
    browser.get(page_url(f"/admin/users/email?recipient=1&user={user_id}"))
    assert heading(browser) == "Contact users"
    subject = unique("Console contact")
    browser.find_element(By.ID, "f-subject").send_keys(subject)
    browser.find_element(By.ID, "f-body").send_keys("Hello from the console.")
    assert Select(browser.find_element(By.ID, "f-recipientEmailList")) \
        .first_selected_option.get_attribute("value") == str(user_id)
    check_screen(browser, "users-contact")
    _submit(browser, "form.card")
    flash = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".flash.ok"))
    assert flash.text == "E-mails sent to 1 recipient(s)."
    mail = _mail(address, subject)
    assert "Hello from the console." in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    # Delete: the API no longer knows the user.
    browser.get(page_url(f"/admin/users/view/{user_id}"))
    _confirm_click(browser, f"form[action='/admin/users/delete/{user_id}'] button")
    _wait(browser, lambda d: "/admin/users/index" in d.current_url)
    assert browser.find_element(By.CSS_SELECTOR, ".flash.ok").text == "User deleted."
    assert _admin_status(f"/admin/users/view/{user_id}") == 404


def _register(address: str) -> None:
    answer = httpx.post(f"{GATEWAY}/users/register", timeout=30,
                        headers={"Accept": "application/json"},
                        json={"email": address, "message": "Please let me in"})
    assert answer.status_code == 200, answer.text


def _inbox_ids(address: str) -> list[str]:
    return [r["Inbox"]["id"] for r in api("GET", "/users/registrations/index")
            if (r["Inbox"].get("data") or {}).get("email") == address]


def test_a_site_admin_accepts_and_discards_registrations(browser: Chrome) -> None:
    kept, dropped = (f"{unique('reg')}@console.test" for _ in range(2))
    previous = api("GET", f"/servers/getSetting/{SELF_REGISTRATION}")["value"]
    api("POST", f"/servers/serverSettingsEdit/{SELF_REGISTRATION}", {"value": True})
    try:
        _register(kept)
        _register(dropped)
    finally:
        api("POST", f"/servers/serverSettingsEdit/{SELF_REGISTRATION}", {"value": previous})
    (kept_id,), (dropped_id,) = _inbox_ids(kept), _inbox_ids(dropped)
    _, admin_email, password = make_user(role_id=SITE_ADMIN_ROLE)
    login(browser, admin_email, password, "/users/registrations")
    _wait(browser, lambda d: heading(d) == "Registrations")
    check_screen(browser, "registrations-index")

    browser.get(page_url(f"/users/acceptRegistrations/{kept_id}"))
    assert kept in heading(browser)
    Select(browser.find_element(By.ID, "f-org_id")).select_by_value(str(HOST_ORG))
    Select(browser.find_element(By.ID, "f-role_id")).select_by_value(str(USER_ROLE))
    check_screen(browser, "registrations-accept")
    _submit(browser, "form.card")
    flash = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".flash.ok"))
    assert flash.text == "Added 1 user(s)."
    users = api("GET", f"/admin/users/index/searchemail:{kept}")
    assert [(u["User"]["email"], u["User"]["role_id"]) for u in users] == [(kept, "3")]

    position = [r["Inbox"]["id"] for r in api("GET", "/users/registrations/index")] \
        .index(dropped_id)
    browser.get(page_url(f"/users/registrations?page={position // 50 + 1}"))
    _confirm_click(browser, f"form[action='/users/discardRegistrations/{dropped_id}'] button")
    flash = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".flash.ok"))
    assert flash.text == "1 registration(s) discarded."
    assert _inbox_ids(kept) == [] and _inbox_ids(dropped) == []
    assert api("GET", f"/admin/users/index/searchemail:{dropped}") == []


def test_an_org_admin_sees_only_their_organisations_users(browser: Chrome) -> None:
    org_id = int(api("POST", "/admin/organisations/add",
                     {"name": unique("console-org")})["Organisation"]["id"])
    _, admin_email, password = make_user(role_id=ORG_ADMIN_ROLE, org_id=org_id)
    member_id, member_email, _ = make_user(role_id=USER_ROLE, org_id=org_id)
    outsider_id, _, _ = make_user(role_id=USER_ROLE, org_id=HOST_ORG)
    login(browser, admin_email, password, "/admin/users/index")
    _wait(browser, lambda d: heading(d) == "Users")
    emails = {a.text for a in browser.find_elements(By.CSS_SELECTOR, "tbody td a")}
    assert emails == {admin_email, member_email}
    assert browser.find_elements(By.ID, "f-searchorg") == []
    check_screen(browser, "users-index-org-admin")

    browser.get(page_url("/admin/users/add"))
    roles = {o.get_attribute("value") for o in
             Select(browser.find_element(By.ID, "f-role_id")).options}
    assert str(SITE_ADMIN_ROLE) not in roles and str(USER_ROLE) in roles
    browser.get(page_url(f"/admin/users/view/{outsider_id}"))
    assert heading(browser) == "Not found"

    # an org admin makes keys for their organisation's users
    browser.get(page_url(f"/auth_keys/add/{member_id}"))
    comment = unique("member-key")
    browser.find_element(By.ID, "f-comment").send_keys(comment)
    _submit(browser, "form.card")
    key = _shown_key(browser)
    status, me = _status("/users/view/me", key)
    assert status == 200 and me["User"]["email"] == member_email
    assert [k["AuthKey"]["comment"] for k in api("GET", f"/auth_keys/index/{member_id}")
            if k["AuthKey"]["authkey_start"] == key[:4]] == [comment]


@pytest.fixture
def gpg_keys() -> Iterator[Keys]:
    """Keys made with gpg on a small HKP server of the test, which GnuPG.keyServer points at."""
    with serve() as server, make_keys(server) as made, keyserver_setting(server):
        yield made


def test_a_site_admin_fetches_a_users_gnupg_key_from_the_key_server(
        browser: Chrome, gpg_keys: Keys) -> None:
    keys = gpg_keys
    user_id = int(api("POST", "/admin/users/add", {"email": keys.email})["User"]["id"])
    _, admin_email, password = make_user(role_id=SITE_ADMIN_ROLE)
    login(browser, admin_email, password, f"/admin/users/edit/{user_id}")
    _wait(browser, lambda d: heading(d) == "Edit user")
    browser.find_element(By.ID, "fetch-gpgkey").click()
    _wait(browser, lambda d: heading(d) == "Fetch GnuPG key")
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")][:4]
            for tr in browser.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert rows == [[keys.good[-8:], time.strftime("%Y-%m-%d", time.gmtime(time.time() - 3600)),
                     f"Good <{keys.email}>", keys.good]]  # the expired and revoked ones: not listed
    check_screen(browser, "users-fetch-gpgkey")

    browser.find_element(By.CSS_SELECTOR, "tbody button[type=submit]").click()
    _wait(browser, lambda d: heading(d) == "Edit user")
    assert browser.find_element(By.CSS_SELECTOR, ".flash.info").text \
        == f"GnuPG key {keys.good} fetched: save to keep it."
    assert browser.find_element(By.ID, "f-gpgkey").get_attribute("value").strip() \
        == keys.armored_good.strip()
    assert api("GET", f"/admin/users/view/{user_id}")["User"]["gpgkey"] in ("", None)
    _submit(browser, "form.card")
    _wait(browser, lambda d: f"/admin/users/view/{user_id}" in d.current_url)
    saved = api("GET", f"/admin/users/view/{user_id}")["User"]["gpgkey"]
    assert saved.replace("\r\n", "\n").strip() == keys.armored_good.strip()  # a textarea's CRLF
    api("POST", f"/admin/users/delete/{user_id}")

"""The console's organisation and role screens in a real browser, each change checked in what the
API then holds: a site admin adds, edits (with a logo), views, merges and deletes organisations,
and is told when a name is taken; adds, edits, makes default and deletes a role. A plain user is
refused the add form."""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import httpx
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from .console import (
    GATEWAY,
    SITE_ADMIN_ROLE,
    USER_ROLE,
    admin_headers,
    api,
    check_screen,
    heading,
    login,
    make_user,
    page_url,
    unique,
)
from .support import wait_for


def png(width: int = 4, height: int = 4) -> bytes:
    """A small valid PNG (grey, 8-bit), made here: no file of the repository needed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def status_of(path: str) -> int:
    return httpx.get(f"{GATEWAY}{path}", headers=admin_headers(), timeout=30).status_code


def org(org_id: int | str) -> dict[str, Any]:
    return dict(api("GET", f"/organisations/view/{org_id}")["Organisation"])


def org_ids_named(name: str) -> list[str]:
    rows = api("GET", f"/organisations/index/scope:all/searchall:{name}")
    return [r["Organisation"]["id"] for r in rows if r["Organisation"]["name"] == name]


def users_of(org_id: int | str) -> set[str]:
    return {r["User"]["email"] for r in api("GET", f"/admin/users/index/searchorg:{org_id}")}


def submit(driver: Chrome, form: str = "main form.card") -> None:
    driver.find_element(By.CSS_SELECTOR, f"{form} button[type=submit]").click()


def type_into(driver: Chrome, field_id: str, text: str) -> None:
    element = driver.find_element(By.ID, field_id)
    element.clear()
    element.send_keys(text)


def flash(driver: Chrome) -> str:
    return str(wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "p.flash"),
                        timeout=15).text)


def open_as_site_admin(driver: Chrome, path: str, title: str, screen: str) -> None:
    """A new site admin logged in through the form, on `path`, whose screen is checked."""
    _, email, password = make_user(role_id=SITE_ADMIN_ROLE)
    login(driver, email, password, path)
    assert heading(driver) == title
    check_screen(driver, screen)


def test_a_site_admin_manages_organisations(browser: Chrome) -> None:
    open_as_site_admin(browser, "/admin/organisations/add", "Add organisation", "orgs-add")

    # add
    name = unique("console-org")
    type_into(browser, "f-name", name)
    type_into(browser, "f-description", "Made by the browser test")
    type_into(browser, "f-sector", "Testing")
    Select(browser.find_element(By.ID, "f-nationality")).select_by_visible_text("Luxembourg")
    submit(browser)
    wait_for(browser, lambda d: "/organisations/view/" in d.current_url)
    org_id = browser.current_url.rsplit("/", 1)[1]
    assert org_ids_named(name) == [org_id]
    made = org(org_id)
    assert (made["description"], made["sector"], made["nationality"], made["local"]) == (
        "Made by the browser test", "Testing", "Luxembourg", True)

    # edit, and a logo
    browser.get(page_url(f"/admin/organisations/edit/{org_id}"))
    type_into(browser, "f-sector", "Finance")
    browser.find_element(By.ID, "f-local").click()  # now a remote organisation
    submit(browser)
    wait_for(browser, lambda d: d.current_url.endswith(f"/organisations/view/{org_id}"))
    edited = org(org_id)
    assert (edited["sector"], edited["local"], edited["name"]) == ("Finance", False, name)
    browser.get(page_url(f"/admin/organisations/edit/{org_id}"))
    check_screen(browser, "orgs-edit")
    with tempfile.TemporaryDirectory() as folder:
        logo = Path(folder) / "logo.png"
        logo.write_bytes(png())
        browser.find_element(By.ID, "f-logo").send_keys(str(logo))
        browser.find_element(By.CSS_SELECTOR,
                             "form[enctype='multipart/form-data'] button").click()
        assert flash(browser) == "The logo has been saved."
    logo_url = org(org_id)["logo_url"]
    assert logo_url == f"/api/v1/orgs/organisations/{org_id}/logo.png"

    # view, with a user of the organisation, and the logo as the API serves it
    _, member, _ = make_user(org_id=int(org_id))
    browser.get(page_url(f"/organisations/view/{org_id}"))
    assert heading(browser) == name
    emails = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "tbody td a")]
    assert emails == [member]
    image = browser.find_element(By.CSS_SELECTOR, "h1 img.org-logo")
    wait_for(browser, lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", image) == 4)
    check_screen(browser, "orgs-view")

    # the index: remote organisations, searched
    browser.get(page_url(f"/organisations/index?scope=external&searchall={name}"))
    links = browser.find_elements(By.CSS_SELECTOR, "tbody td a[href^='/organisations/view']")
    assert [a.text for a in links] == [name]
    check_screen(browser, "orgs-index")

    # a name already taken: the form again with MISP's message, nothing made
    browser.get(page_url("/admin/organisations/add"))
    type_into(browser, "f-name", name)
    submit(browser)
    error = wait_for(browser, lambda d: d.find_element(By.ID, "e-name"))
    assert error.text == "An organisation with this name already exists."
    check_screen(browser, "orgs-add-invalid")
    assert org_ids_named(name) == [org_id]

    # merge a second organisation (with its user) into the first
    second_name = unique("console-merged")
    second = api("POST", "/admin/organisations/add", {"name": second_name})["Organisation"]["id"]
    _, moved, _ = make_user(org_id=int(second))
    browser.get(page_url(f"/admin/organisations/merge/{second}?search={name}"))
    browser.find_element(By.ID, "f-targetType-external").click()
    Select(browser.find_element(By.ID, "f-orgsExternal")).select_by_value(org_id)
    check_screen(browser, "orgs-merge")
    submit(browser)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "input[name=confirmed]"))
    check_screen(browser, "orgs-merge-confirm")
    assert users_of(second) == {moved}  # nothing happened before the confirmation
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait_for(browser, lambda d: d.current_url.endswith(f"/organisations/view/{org_id}"),
             timeout=15)
    assert flash(browser) == "Organisation merged. 1 user moved."
    assert status_of(f"/organisations/view/{second}") == 404
    assert users_of(org_id) == {member, moved}

    # an organisation with users is not deleted: the API's refusal is said on its page
    browser.get(page_url(f"/admin/organisations/delete/{org_id}"))
    browser.find_element(By.CSS_SELECTOR, "main form button.danger").click()
    assert flash(browser).startswith("Could not delete Organisation.")
    assert browser.current_url.endswith(f"/organisations/view/{org_id}")
    assert org(org_id)["name"] == name

    # delete an organisation without users
    doomed = api("POST", "/admin/organisations/add",
                 {"name": unique("console-doomed")})["Organisation"]["id"]
    browser.get(page_url(f"/admin/organisations/delete/{doomed}"))
    check_screen(browser, "orgs-delete")
    browser.find_element(By.CSS_SELECTOR, "main form button.danger").click()
    wait_for(browser, lambda d: "/organisations/index" in d.current_url)
    assert flash(browser) == "Organisation deleted"
    assert status_of(f"/organisations/view/{doomed}") == 404


def roles() -> dict[str, dict[str, Any]]:
    return {r["Role"]["name"]: r["Role"] for r in api("GET", "/roles/index")}


def default_role_id() -> str:
    return next(role["id"] for role in roles().values() if role["default"])


def test_a_site_admin_manages_roles(browser: Chrome) -> None:
    open_as_site_admin(browser, "/admin/roles/add", "Add role", "roles-add")

    name = unique("console-role")
    type_into(browser, "f-name", name)
    Select(browser.find_element(By.ID, "f-permission")).select_by_value("1")
    for flag in ("perm_audit", "perm_tagger"):
        browser.find_element(By.ID, f"f-{flag}").click()
    type_into(browser, "f-max_execution_time", "300")
    type_into(browser, "f-memory_limit", "512M")
    submit(browser)
    assert flash(browser) == f"The role {name} has been saved."
    role = roles()[name]
    try:
        check_role(browser, role)
    finally:
        if name in roles():
            api("POST", f"/admin/roles/delete/{role['id']}")


def check_role(browser: Chrome, role: dict[str, Any]) -> None:
    """The role just added: its flags as the API holds them, then edit, view, make default
    (and back) and delete it through the pages."""
    name, role_id = role["name"], role["id"]
    assert (role["permission"], role["perm_audit"], role["perm_tagger"], role["perm_admin"],
            role["perm_add"], role["max_execution_time"], role["memory_limit"]) == (
        "1", True, True, False, True, "300", "512M")
    row = browser.find_element(By.ID, f"role-{role_id}")
    assert row.find_element(By.CSS_SELECTOR, "td[data-flag=perm_tagger]").text == "Yes"
    check_screen(browser, "roles-index")

    browser.get(page_url(f"/admin/roles/edit/{role_id}"))
    check_screen(browser, "roles-edit")
    browser.find_element(By.ID, "f-perm_tagger").click()
    browser.find_element(By.ID, "f-perm_sharing_group").click()
    submit(browser)
    assert flash(browser) == f"The role {name} has been saved."
    role = roles()[name]
    assert (role["perm_tagger"], role["perm_sharing_group"], role["perm_audit"],
            role["permission"]) == (False, True, True, "1")
    browser.get(page_url(f"/roles/view/{role_id}"))
    assert heading(browser) == f"Role {name}"
    shown = {dd.get_attribute("data-flag"): dd.text
             for dd in browser.find_elements(By.CSS_SELECTOR, "dd[data-flag]")}
    assert (shown["perm_sharing_group"], shown["perm_tagger"]) == ("Yes", "No")
    check_screen(browser, "roles-view")

    before = default_role_id()
    try:
        browser.get(page_url("/roles/index"))
        browser.find_element(
            By.CSS_SELECTOR, f"#role-{role_id} form[action$='/set_default/{role_id}'] "
            "button").click()
        browser.switch_to.alert.accept()
        assert flash(browser) == "Default role set."
        assert default_role_id() == role_id
        badge = browser.find_element(By.CSS_SELECTOR, f"#role-{role_id} .badge")
        assert badge.text == "Default"
    finally:
        api("POST", f"/admin/roles/set_default/{before}")
    assert default_role_id() == before

    browser.get(page_url(f"/admin/roles/delete/{role_id}"))
    check_screen(browser, "roles-delete")
    browser.find_element(By.CSS_SELECTOR, "main form button.danger").click()
    assert flash(browser) == "Role deleted."
    assert name not in roles()


def test_a_plain_user_is_refused_adding_an_organisation(phone: Chrome) -> None:
    _, email, password = make_user(role_id=USER_ROLE)
    login(phone, email, password, "/admin/organisations/add")
    assert heading(phone) == "Not allowed"
    check_screen(phone, "orgs-add-refused-phone")
    # the index is theirs to read (on a phone), without the site admin's links
    phone.get(page_url("/organisations/index"))
    assert heading(phone) == "Local organisations"
    assert phone.find_elements(By.CSS_SELECTOR, "a[href^='/admin/organisations/']") == []
    check_screen(phone, "orgs-index-phone")

"""The site admin's first login in a browser: the temporary password `make up` prints (here made
anew with `python -m identity admin-password`, as `make admin-password` does) logs in, the console
insists on a new password before anything else, MISP's policy messages show by the field, the
page first asked for is shown once it is changed, and the new password is the one that then
works (through the API too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from .console import GATEWAY, check_screen, heading, login, new_password, page_url
from .support import wait_for

ADMIN_EMAIL = "admin@admin.test"
STATE_DIR = Path(os.environ.get("MISP_STATE_DIR", ".local"))


def temporary_admin_password() -> str:
    done = subprocess.run([sys.executable, "-m", "identity", "admin-password", "--yes"],
                          capture_output=True, text=True, timeout=60, check=True)
    password = done.stdout.strip()
    assert password and (STATE_DIR / "admin.password").read_text().strip() == password
    return password


def api_login(password: str) -> int:
    return httpx.post(f"{GATEWAY}/users/login", timeout=30,
                      json={"email": ADMIN_EMAIL, "password": password},
                      headers={"Accept": "application/json"}).status_code


def change_password(browser: Chrome, password: str, confirm: str) -> None:
    browser.find_element(By.ID, "f-password").send_keys(password)
    browser.find_element(By.ID, "f-confirm_password").send_keys(confirm)
    browser.find_element(By.CSS_SELECTOR, "form[action='/users/change_pw'] button").click()


def test_the_first_password_must_be_changed_before_anything_else(browser: Chrome) -> None:
    temporary = temporary_admin_password()
    login(browser, ADMIN_EMAIL, temporary, "/admin/users/index")
    owed = "/users/change_pw?next=%2Fadmin%2Fusers%2Findex"  # where it goes once changed
    wait_for(browser, lambda d: d.current_url.endswith(owed))
    assert heading(browser) == "Change password"
    check_screen(browser, "first-login-change-password")

    browser.get(page_url("/organisations/index"))  # nothing else until it is changed
    wait_for(browser, lambda d: d.current_url.endswith(
        "/users/change_pw?next=%2Forganisations%2Findex"))

    change_password(browser, "short", "short")  # MISP's policy, by the field
    error = wait_for(browser, lambda d: d.find_element(By.ID, "e-password"), timeout=20)
    assert error.text
    assert browser.find_element(By.ID, "f-password").get_attribute("aria-invalid") == "true"
    check_screen(browser, "first-login-policy-refused")

    chosen = new_password()
    change_password(browser, chosen, chosen)  # the refused try kept where it goes
    wait_for(browser, lambda d: d.current_url.endswith("/organisations/index"), timeout=20)
    assert "Password changed." in browser.find_element(By.CSS_SELECTOR, ".flash").text

    browser.get(page_url("/admin/users/index"))
    assert heading(browser) == "Users"
    assert api_login(chosen) == 200
    assert api_login(temporary) == 403

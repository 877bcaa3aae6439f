"""What the console's browser tests share: users made through the API (the site admin's key),
a login through the console's own form, and the checks every screen passes (no browser console
error or CSP refusal, no serious axe violation, a screenshot under the test output)."""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path
from typing import Any

import httpx
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from .support import axe_violations, console_errors, format_violations, screenshot, wait_for

GATEWAY = os.environ.get("MISP_GATEWAY_URL", "http://127.0.0.1:8080")
STATE_DIR = Path(os.environ.get("MISP_STATE_DIR", ".local"))
SITE_ADMIN_ROLE = 1
ORG_ADMIN_ROLE = 2
USER_ROLE = 3
HOST_ORG = 1


def unique(prefix: str) -> str:
    """A name no earlier run used (end-to-end tests never pass on old rows)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_password() -> str:
    """Long enough for any password policy, with every character class."""
    return secrets.token_urlsafe(18) + "aA1!"


def admin_headers() -> dict[str, str]:
    """The site admin's authkey (`.local/admin.authkey`, written by identity's first run)."""
    key = (STATE_DIR / "admin.authkey").read_text().strip()
    return {"Authorization": key, "Accept": "application/json"}


def api(method: str, path: str, json: Any = None) -> Any:
    """MISP's API as the site admin (its authkey), JSON in and out; a 4xx/5xx raises."""
    answer = httpx.request(method, f"{GATEWAY}{path}", json=json, timeout=30,
                           headers={**admin_headers(), "Accept": "application/json"})
    answer.raise_for_status()
    return answer.json()


def make_user(*, role_id: int = USER_ROLE, org_id: int = HOST_ORG,
              change_pw: bool = False) -> tuple[int, str, str]:
    """A new user with a known password: (id, email, password)."""
    email = f"{unique('browser')}@console.test"
    password = new_password()
    body = api("POST", "/admin/users/add", {"email": email, "org_id": org_id,
                                             "role_id": role_id, "password": password,
                                             "change_pw": change_pw})
    return int(body["User"]["id"]), email, password


def page_url(path: str) -> str:
    return f"{GATEWAY}{path}"


def login(driver: Chrome, email: str, password: str, path: str = "/") -> None:
    """Log in through the console's form, then land on `path`."""
    driver.get(page_url(f"/users/login?next={path}"))
    wait_for(driver, lambda d: d.find_element(By.ID, "f-email"))
    driver.find_element(By.ID, "f-email").send_keys(email)
    driver.find_element(By.ID, "f-password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form[action='/users/login'] button").click()
    wait_for(driver, lambda d: "/users/login" not in d.current_url, timeout=15)


def heading(driver: Chrome) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, "main h1").text)


def check_screen(driver: Chrome, name: str) -> None:
    """Every screen: a screenshot, no console error (a CSP refusal is one), no serious or
    critical accessibility violation."""
    screenshot(driver, f"console/{name}")
    # A page answered 4xx on purpose (a refusal, a form sent back with errors) is logged as a
    # failed load of the page itself: that one is the test's business, not an error.
    own = driver.current_url + " "
    errors = [e for e in console_errors(driver)
              if not (e.get("source") == "network" and str(e.get("message")).startswith(own))]
    assert errors == [], errors
    violations = axe_violations(driver)
    assert violations == [], format_violations(violations)

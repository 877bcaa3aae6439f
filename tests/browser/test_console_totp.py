"""TOTP two-factor login in the console, in a real browser: a user sets up a TOTP from their own
page (QR code inline, no CSP refusal), logs out, logs in again to a given page and is asked for
the code (a wrong one gets MISP's message, a right one opens the session on the page asked for),
then, as an admin, removes it."""

from __future__ import annotations

import time

import pyotp
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from .console import SITE_ADMIN_ROLE, check_screen, heading, login, make_user, page_url
from .support import wait_for


def _code(driver: Chrome, code: str, form: str) -> None:
    field = wait_for(driver, lambda d: d.find_element(By.ID, "f-otp"))
    field.clear()
    field.send_keys(code)
    driver.find_element(By.CSS_SELECTOR, f"form[action='{form}'] button").click()


def test_a_user_sets_up_totp_and_logs_in_with_a_code(browser: Chrome) -> None:
    user_id, email, password = make_user(role_id=SITE_ADMIN_ROLE)
    login(browser, email, password, "/users/view/me")
    assert wait_for(browser, lambda d: d.find_element(By.ID, "totp-status")).text == \
        "No TOTP is set."
    browser.find_element(By.CSS_SELECTOR, "a[href='/users/totp_new']").click()
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#totp-qrcode svg"))
    secret = browser.find_element(By.ID, "totp-secret").text.strip()
    check_screen(browser, "totp-new")
    _code(browser, pyotp.TOTP(secret).now(), "/users/totp_new")
    status = wait_for(browser, lambda d: d.find_element(By.ID, "totp-status"))
    assert status.text.startswith("A TOTP is set")
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait_for(browser, lambda d: "/users/login" in d.current_url)

    login(browser, email, password, "/users/view/me")  # the page asked for, past the code
    wait_for(browser, lambda d: "/users/otp" in d.current_url)
    assert heading(browser) == "Two-factor authentication"
    assert browser.get_cookie("MISP-session") is None
    _code(browser, "000000", "/users/otp")
    alert = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[role=alert]"))
    assert alert.text == "The OTP is incorrect or has expired"
    check_screen(browser, "otp-refused")
    # the enrolment used this step's code: the next step's (within the drift) is a new one
    _code(browser, pyotp.TOTP(secret).at(time.time() + 30), "/users/otp")
    wait_for(browser, lambda d: "/users/otp" not in d.current_url)
    assert browser.get_cookie("MISP-session") is not None
    assert browser.current_url == page_url("/users/view/me")
    browser.find_element(By.CSS_SELECTOR, f"form[action='/users/totp_delete/{user_id}'] button"
                         ).click()
    wait_for(browser, lambda d: d.switch_to.alert).accept()
    status = wait_for(browser, lambda d: d.find_element(By.ID, "totp-status"))
    assert status.text == "No TOTP is set."

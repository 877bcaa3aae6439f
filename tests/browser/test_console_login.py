"""The console's login in a real browser: a user logs in through the form, sees the screens of
their role, logs out by POST; a wrong password gets MISP's message; a plain user is refused the
admin screens with the API's own answer."""

from __future__ import annotations

from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from .console import (
    SITE_ADMIN_ROLE,
    USER_ROLE,
    check_screen,
    heading,
    login,
    make_user,
    page_url,
)
from .support import wait_for


def test_a_wrong_password_gets_misps_message_and_no_session(browser: Chrome) -> None:
    _, email, _ = make_user()
    browser.get(page_url("/users/login"))
    browser.find_element(By.ID, "f-email").send_keys(email)
    browser.find_element(By.ID, "f-password").send_keys("not the password")
    browser.find_element(By.CSS_SELECTOR, "form[action='/users/login'] button").click()
    alert = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[role=alert]"))
    assert alert.text == "Invalid username or password, try again"
    assert browser.get_cookie("MISP-session") is None
    check_screen(browser, "login-refused")


def test_a_site_admin_logs_in_sees_the_users_and_logs_out(browser: Chrome) -> None:
    _, email, password = make_user(role_id=SITE_ADMIN_ROLE)
    login(browser, email, password, "/admin/users/index")
    assert heading(browser) == "Users"
    emails = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "tbody td a")]
    assert email in emails or len(emails) == 50  # the newest user may be on a later page
    check_screen(browser, "users-index")
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait_for(browser, lambda d: "/users/login" in d.current_url)
    assert browser.get_cookie("MISP-session") is None
    browser.get(page_url("/admin/users/index"))
    wait_for(browser, lambda d: "/users/login" in d.current_url)


def test_a_plain_user_is_refused_the_admin_screens(browser: Chrome) -> None:
    _, email, password = make_user(role_id=USER_ROLE)
    login(browser, email, password)
    assert heading(browser) == "Administration"
    assert browser.find_elements(By.CSS_SELECTOR, "a[href='/admin/users/index']") == []
    browser.get(page_url("/admin/users/index"))
    assert heading(browser) == "Not allowed"
    check_screen(browser, "users-index-refused")

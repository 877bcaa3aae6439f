"""The console's jobs and scheduled tasks in a real browser: a site admin watches the job list
while a job is created through the API (its row appears without a reload: the live update),
cancels it from the list (the API then holds it cancelled), opens it, and edits a scheduled task's
schedule (the API holds it) or gets the API's refusal of a bad frequency beside the field. The
live stream answers only a user who may read the jobs."""

from __future__ import annotations

from typing import Any

import httpx
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

# A queue no worker of the stack serves: a job there waits until cancelled.
IDLE_QUEUE = "update"


def job(job_id: int) -> dict[str, Any]:
    return dict(api("GET", f"/api/v1/jobs/jobs/{job_id}")["Job"])


def test_the_job_list_follows_new_jobs_live_and_cancels_one(browser: Chrome) -> None:
    _, email, password = make_user(role_id=SITE_ADMIN_ROLE)
    login(browser, email, password, "/jobs/index")
    assert heading(browser) == "Jobs"
    check_screen(browser, "jobs-index")
    wait_for(browser, lambda d: d.find_element(By.ID, "jobs-live").get_attribute(
        "data-live-state") == "open", timeout=10, message="the live stream did not connect")
    browser.execute_script("window.consoleTestMarker = 'not reloaded'")

    job_id = int(api("POST", "/api/v1/jobs/jobs",
                     {"job_type": "noop", "worker": IDLE_QUEUE})["Job"]["id"])
    row = wait_for(browser, lambda d: d.find_elements(By.ID, f"job-{job_id}"), timeout=15,
                   message=f"job {job_id} did not appear without a reload")[0]
    assert browser.execute_script("return window.consoleTestMarker") == "not reloaded"
    assert row.get_attribute("data-status") == "Waiting"
    progress = row.find_element(By.CSS_SELECTOR, "progress")
    assert progress.get_attribute("aria-label") == f"Progress of job {job_id}"

    row.find_element(By.CSS_SELECTOR, f"form[action='/jobs/cancel/{job_id}'] button").click()
    wait_for(browser, lambda d: d.switch_to.alert).accept()
    flash = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".flash.ok"), timeout=15)
    assert flash.text == "Job cancelled."
    cancelled = job(job_id)
    assert cancelled["cancelled"] is True
    assert cancelled["job_status"] == "Failed"
    assert browser.find_elements(By.CSS_SELECTOR, f"#job-{job_id} form") == []

    browser.find_element(By.CSS_SELECTOR, f"#job-{job_id} a[href='/jobs/view/{job_id}']").click()
    wait_for(browser, lambda d: heading(d) == f"Job {job_id}")
    assert "(cancelled)" in browser.find_element(By.ID, "job-status").text
    check_screen(browser, "jobs-view")


def test_a_scheduled_tasks_schedule_is_edited_or_refused(browser: Chrome) -> None:
    description = unique("browser task")
    task = api("POST", "/api/v1/jobs/tasks", {"type": "noop", "description": description})
    task_id = int(task["Task"]["id"])
    _, email, password = make_user(role_id=SITE_ADMIN_ROLE)
    login(browser, email, password, "/tasks/index")
    assert heading(browser) == "Scheduled tasks"
    row = browser.find_element(By.ID, f"t-{task_id}")
    assert description in row.text
    check_screen(browser, "jobs-tasks")

    timer = browser.find_element(By.ID, f"timer-{task_id}")
    timer.clear()
    timer.send_keys("not hours")
    browser.find_element(By.CSS_SELECTOR, f"#task-{task_id} button").click()
    error = wait_for(browser, lambda d: d.find_element(By.ID, f"e-timer-{task_id}"), timeout=15)
    assert error.text == "The frequency must be a number of hours"
    check_screen(browser, "jobs-tasks-refused")

    timer = browser.find_element(By.ID, f"timer-{task_id}")
    timer.clear()
    timer.send_keys("0")
    browser.execute_script("arguments[0].value = '03:30'",
                           browser.find_element(By.ID, f"time-{task_id}"))
    browser.find_element(By.CSS_SELECTOR, f"#task-{task_id} button").click()
    flash = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".flash.ok"), timeout=15)
    assert flash.text == "Task updated."
    held = {int(t["Task"]["id"]): t["Task"] for t in api("GET", "/tasks/index")}[task_id]
    assert (held["timer"], held["scheduled_time"]) == ("0", "03:30")

    browser.find_element(By.CSS_SELECTOR, f"form[action='/tasks/pause/{task_id}'] button").click()
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".flash.ok"), timeout=15)
    held = {int(t["Task"]["id"]): t["Task"] for t in api("GET", "/tasks/index")}[task_id]
    assert held["paused"] is True

    browser.get(browser.current_url.split("/tasks/")[0] + "/jobs/dead")
    assert heading(browser) == "Dead jobs"
    check_screen(browser, "jobs-dead")


def session_of(email: str, password: str) -> str:
    """A browser session of the user, from identity's login (no browser needed)."""
    answer = httpx.post(page_url("/users/login"), json={"email": email, "password": password},
                        headers={"Accept": "application/json"}, timeout=30)
    assert answer.status_code == 200
    return str(answer.cookies["MISP-session"])


def test_the_live_feeds_answer_only_those_who_may_read_them() -> None:
    assert httpx.get(page_url("/console/live/jobs"), timeout=30).status_code == 401
    _, email, password = make_user(role_id=USER_ROLE)
    plain = {"MISP-session": session_of(email, password)}
    assert httpx.get(page_url("/console/live/jobs"), cookies=plain, timeout=30).status_code == 403
    assert httpx.get(page_url("/console/live/nope"), cookies=plain, timeout=30).status_code == 404
    _, email, password = make_user(role_id=SITE_ADMIN_ROLE)
    admin = {"MISP-session": session_of(email, password)}
    with httpx.stream("GET", page_url("/console/live/jobs"), cookies=admin, timeout=30) as live:
        assert live.status_code == 200
        assert live.headers["content-type"].startswith("text/event-stream")
        assert next(live.iter_text()).startswith("retry: ")

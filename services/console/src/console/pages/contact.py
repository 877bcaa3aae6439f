"""Contact users: MISP's admin/users/email form (the mailer's): a custom message, a welcome or a
password reset, to all users, one user or a future user."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.forms import Form
from console.gateway import ApiError
from console.pages.choices import Options, loose_errors
from console.pages.common import api, posted_form, records, shown_on_the_form, viewer_of
from console.viewer import Viewer
from console.web import redirect, render

router = APIRouter(include_in_schema=False)

# MISP's form values (mailer.domain.model ACTIONS and RECIPIENTS).
ACTIONS: Options = [("0", "Custom message"), ("1", "Welcome message"),
                    ("2", "Reset password")]
RECIPIENTS: Options = [("0", "All existing users"), ("1", "An existing user"),
                       ("2", "A potential future user")]
CONTACT_FIELDS = ("action", "recipient", "recipientEmailList", "recipientEmail", "gpg",
                  "subject", "body")


def contact_body(form: Form) -> dict[str, Any]:
    """The JSON of admin/users/email: the fields of the chosen recipients only."""
    body: dict[str, Any] = {"action": form.text("action") or "0",
                            "recipient": form.text("recipient") or "0",
                            "subject": form.text("subject"), "body": form["body"],
                            "customMessage": form.flag("customMessage")}
    if body["recipient"] == "1":
        body["recipientEmailList"] = form.text("recipientEmailList")
    elif body["recipient"] == "2":
        body["recipientEmail"] = form.text("recipientEmail")
        if form.text("gpg"):
            body["gpg"] = form.text("gpg")
    return body


def user_choices(body: Any) -> Options:
    """admin/users/index as (id, email) options, by email."""
    found = [(str(row["User"].get("id", "")), str(row["User"].get("email", "")))
             for row in records(body, "User")]
    return sorted((u for u in found if u[0]), key=lambda u: u[1].lower())


async def _form(request: Request, viewer: Viewer, values: dict[str, Any], *,
                errors: dict[str, str] | None = None, message: str | None = None,
                status_code: int = 200) -> Response:
    users = user_choices(await api(request, viewer, "GET", "/admin/users/index"))
    return render(request, "contact/form.html", viewer=viewer, values=values, users=users,
                  actions=ACTIONS, recipients=RECIPIENTS, errors=errors or {},
                  message=message, status_code=status_code)


@router.get("/admin/users/email")
async def contact_form(request: Request) -> Response:
    viewer = await viewer_of(request)
    query = request.query_params
    values = {"action": query.get("action", "0"), "recipient": query.get("recipient", "0"),
              "recipientEmailList": query.get("user", ""), "customMessage": True}
    return await _form(request, viewer, values)


@router.post("/admin/users/email")
async def contact(request: Request) -> Response:
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    body = contact_body(form)
    try:
        answer = await api(request, viewer, "POST", "/admin/users/email", json=body)
    except ApiError as exc:
        if not shown_on_the_form(exc):
            raise
        values: dict[str, Any] = {name: form[name] for name in CONTACT_FIELDS}
        values["customMessage"] = form.flag("customMessage")
        return await _form(request, viewer, values, errors=exc.field_errors,
                           status_code=exc.status,
                           message="; ".join([exc.message, *loose_errors(exc.errors)]))
    return redirect("/admin/users/email", flash=str(answer.get("message") or "E-mail sent."))

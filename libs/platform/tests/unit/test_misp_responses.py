"""MISP's record rendering and envelopes."""

from datetime import UTC, date, datetime, timedelta, timezone

from misp_platform.misp.errors import ValidationFailed
from misp_platform.misp.responses import (
    MispJSONResponse,
    failure,
    message_body,
    misp_record,
    past_tense,
    render_value,
    success,
)


def test_integers_render_as_strings_and_booleans_stay_booleans():
    assert render_value(5) == "5"
    assert render_value(0) == "0"
    assert render_value(True) is True
    assert render_value(False) is False
    assert render_value(None) is None
    assert render_value("x") == "x"


def test_datetimes_render_in_misp_format_in_utc():
    assert render_value(datetime(2024, 10, 21, 8, 5, 3)) == "2024-10-21 08:05:03"
    paris = timezone(timedelta(hours=2))
    assert render_value(datetime(2024, 10, 21, 10, 5, 3, tzinfo=paris)) == "2024-10-21 08:05:03"
    assert render_value(datetime(2024, 1, 2, 3, 4, 5, 999, tzinfo=UTC)) == "2024-01-02 03:04:05"
    assert render_value(date(2024, 1, 2)) == "2024-01-02"


def test_nested_values_are_rendered_too():
    assert render_value({"a": [1, True, {"b": 2}]}) == {"a": ["1", True, {"b": "2"}]}


def test_a_record_wraps_the_model_and_its_associations():
    record = misp_record("User", {"id": 5, "email": "a@b.c", "disabled": False,
                                  "last_login": None},
                         Role={"id": 1, "perm_admin": True}, UserSetting=[])
    assert record == {
        "User": {"id": "5", "email": "a@b.c", "disabled": False, "last_login": None},
        "Role": {"id": "1", "perm_admin": True},
        "UserSetting": [],
    }


def test_success_envelope_uses_cake_past_tense_by_default():
    assert past_tense("delete") == "deleted"
    assert past_tense("add") == "added"
    assert success("delete", "Organisation", "/admin/organisations/delete/3", id=3) == {
        "saved": True, "success": True, "name": "Organisation deleted",
        "message": "Organisation deleted", "url": "/admin/organisations/delete/3", "id": "3",
    }


def test_success_envelope_takes_a_custom_message_and_no_id():
    body = success("set_default", "Role", "/admin/roles/set_default/2",
                   message="Default role set.")
    assert body["name"] == body["message"] == "Default role set."
    assert "id" not in body


def test_failure_envelope_is_misps_could_not_shape():
    body = failure("delete", "Organisation", "/admin/organisations/delete/3", [], id=3)
    assert body == {"saved": False, "name": "Could not delete Organisation",
                    "message": "Could not delete Organisation",
                    "url": "/admin/organisations/delete/3", "errors": [], "id": "3"}


def test_validation_failed_carries_the_failure_envelope():
    exc = ValidationFailed("add", "Role", "/admin/roles/add",
                           {"name": ["A role with this name already exists."]})
    assert exc.status_code == 403
    assert exc.body("/ignored") == {
        "saved": False, "name": "Could not add Role", "message": "Could not add Role",
        "url": "/admin/roles/add", "errors": {"name": ["A role with this name already exists."]},
    }


def test_message_body_is_bare():
    assert message_body("Password Changed.") == {"message": "Password Changed."}


def test_json_response_is_compact_utf8_with_misp_datetimes():
    response = MispJSONResponse({"name": "Zoë", "at": datetime(2024, 1, 2, 3, 4, 5)})
    assert response.body == '{"name":"Zoë","at":"2024-01-02 03:04:05"}'.encode()

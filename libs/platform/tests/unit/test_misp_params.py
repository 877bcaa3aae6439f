"""CakePHP URL conventions and flat-or-wrapped bodies, without I/O."""

import pytest

from misp_platform.misp.errors import BadRequest, InvalidJSON
from misp_platform.misp.params import index_candidate, split_path, unwrap


def test_named_params_are_lifted_out_of_the_path():
    path, named, ext = split_path("/admin/users/index/value:foo/searchorg:2")
    assert path == "/admin/users/index"
    assert named == {"value": "foo", "searchorg": "2"}
    assert ext is None


def test_named_param_values_are_url_decoded_with_plus_as_space():
    _, named, _ = split_path("/admin/logs/index/email:a%40b.c/title:two+words%2Bplus")
    assert named == {"email": "a@b.c", "title": "two words+plus"}


def test_an_encoded_colon_is_data_not_a_separator():
    path, named, _ = split_path("/servers/getSetting/a%3Ab")
    assert path == "/servers/getSetting/a:b"
    assert named == {}


def test_a_named_value_keeps_further_colons():
    _, named, _ = split_path("/admin/logs/index/created:2024-01-01 10:00")
    assert named == {"created": "2024-01-01 10:00"}


def test_json_suffix_is_stripped_before_named_params_are_read():
    assert split_path("/admin/logs/index/page:1.json") == ("/admin/logs/index", {"page": "1"},
                                                           "json")
    assert split_path("/attributes/describeTypes.json") == ("/attributes/describeTypes", {},
                                                            "json")
    assert split_path("/roles/index.xml")[0] == "/roles/index"
    assert split_path("/roles/index.csv")[2] == "csv"


def test_other_dots_are_kept():
    assert split_path("/servers/getSetting/MISP.baseurl") == (
        "/servers/getSetting/MISP.baseurl", {}, None)
    assert split_path("/servers/getSetting/MISP.baseurl.json")[0] == (
        "/servers/getSetting/MISP.baseurl")
    assert split_path("/x/file.JSON")[0] == "/x/file.JSON"


def test_a_trailing_slash_is_dropped_and_root_is_kept():
    assert split_path("/admin/users/")[0] == "/admin/users"
    assert split_path("/")[0] == "/"


def test_only_bare_controller_paths_may_mean_their_index():
    assert index_candidate("/admin/users") == "/admin/users/index"
    assert index_candidate("/roles") == "/roles/index"
    assert index_candidate("/roles/view") is None
    assert index_candidate("/admin/users/index") is None
    assert index_candidate("/") is None


def test_bodies_may_be_flat_or_wrapped():
    assert unwrap({"email": "a@b.c"}, "User") == {"email": "a@b.c"}
    assert unwrap({"User": {"email": "a@b.c"}}, "User") == {"email": "a@b.c"}
    assert unwrap({"request": {"email": "a@b.c"}}, "User") == {"email": "a@b.c"}
    assert unwrap({"request": {"User": {"email": "a@b.c"}}}, "User") == {"email": "a@b.c"}


def test_the_model_wrapper_wins_over_siblings_and_empty_bodies_are_empty():
    assert unwrap({"User": {"email": "x"}, "junk": 1}, "User") == {"email": "x"}
    assert unwrap([], "User") == {}
    assert unwrap(None) == {}


def test_a_body_that_is_not_an_object_is_a_bad_request():
    with pytest.raises(BadRequest):
        unwrap([1, 2], "User")
    with pytest.raises(BadRequest):
        unwrap("text")


def test_invalid_json_is_misps_405():
    exc = InvalidJSON()
    assert exc.status_code == 405
    assert exc.message.startswith("Invalid JSON input. Make sure that the JSON input is a "
                                  "correctly formatted JSON string.")

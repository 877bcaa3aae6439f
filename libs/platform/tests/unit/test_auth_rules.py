"""Authkey handling and MISP's authentication rules, without I/O."""

import re
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from misp_contracts.events.identity import PERM_FLAGS, RoleState
from misp_platform.auth.dependency import (
    AUTH_FAILED,
    IP_REFUSED,
    USER_DISABLED,
    Principal,
    evaluate,
    expiration_iso,
    ip_allowed,
    presented_keys,
    read_only_role,
)
from misp_platform.auth.keys import (
    authkey_hmac,
    generate_authkey,
    is_well_formed,
    mask_authkey,
)

KEY = "abcd" + "0" * 32 + "wxyz"
FULL_ROLE = RoleState(id=1, name="admin", permission=3,
                      **{p: True for p in PERM_FLAGS if p != "perm_skip_otp"},
                      perm_add=True, perm_modify=True, perm_modify_org=True, perm_publish=True,
                      perm_full=True)


def test_generated_keys_are_40_alphanumerics_and_differ():
    keys = {generate_authkey() for _ in range(50)}
    assert len(keys) == 50
    assert all(re.fullmatch(r"[a-zA-Z0-9]{40}", k) for k in keys)


def test_the_hmac_is_hex_sha256_and_depends_on_the_pepper():
    digest = authkey_hmac("pepper", KEY)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == authkey_hmac("pepper", KEY)
    assert digest != authkey_hmac("other", KEY)


def test_a_key_is_masked_as_misp_logs_it():
    assert mask_authkey(KEY) == "abcd" + "*" * 32 + "wxyz"


def test_well_formed_keys_are_exactly_40_alphanumerics():
    assert is_well_formed(KEY)
    assert not is_well_formed(KEY[:-1])
    assert not is_well_formed(KEY + "a")
    assert not is_well_formed(KEY[:-1] + "-")


def test_x_misp_auth_wins_over_authorization():
    assert presented_keys({"x-misp-auth": "a", "authorization": "b"}) == ["a"]
    assert presented_keys({"authorization": "b"}) == ["b"]
    assert presented_keys({"x-misp-auth": " ", "authorization": "b"}) == ["b"]


def test_a_comma_separated_list_is_allowed_and_basic_means_no_key():
    assert presented_keys({"authorization": "k1, k2,,"}) == ["k1", "k2"]
    assert presented_keys({"authorization": "Basic dXNlcjpwYXNz"}) == []
    assert presented_keys({}) == []


def test_cidr_lists_are_checked_with_ipaddress():
    assert ip_allowed("10.1.2.3", ["10.0.0.0/8"])
    assert ip_allowed("192.168.1.5", ["192.168.1.5"])
    assert ip_allowed("::ffff:10.1.2.3", ["10.0.0.0/8"])
    assert ip_allowed("2001:db8::1", ["2001:db8::/32"])
    assert not ip_allowed("11.1.2.3", ["10.0.0.0/8"])
    assert not ip_allowed("10.1.2.3", ["not-a-cidr"])
    assert not ip_allowed(None, ["0.0.0.0/0"])
    assert not ip_allowed("2001:db8::1", ["0.0.0.0/0"])


def test_a_read_only_key_keeps_only_auth_and_audit():
    role = read_only_role(FULL_ROLE)
    assert role.perm_auth and role.perm_audit
    assert not role.perm_site_admin and not role.perm_admin and not role.perm_add
    assert not role.perm_full and role.permission == 0


def _row(**overrides):
    values = dict(key_hmac="h", authkey_id=7, authkey_start="abcd", authkey_end="wxyz",
                  expiration=0, allowed_ips=None, read_only=False, user_id=3,
                  email="u@example.org", org_id=1, disabled=False, change_pw=False,
                  user_expiration=None,
                  role_state=FULL_ROLE.model_dump(mode="json"), org_name="ORGNAME")
    values.update(overrides)
    return SimpleNamespace(**values)


NOW = 1_700_000_000.0


def test_an_unknown_key_fails_with_the_masked_key_in_the_title():
    failure = evaluate(None, KEY, ip="1.2.3.4", now=NOW)
    assert failure.reason == "unknown"
    assert failure.message == AUTH_FAILED
    assert failure.title == f"Failed authentication using API key (abcd{'*' * 32}wxyz)"


def test_a_valid_key_gives_the_principal():
    principal = evaluate(_row(expiration=int(NOW) + 60), KEY, ip="1.2.3.4", now=NOW)
    assert isinstance(principal, Principal)
    assert principal.user_id == 3 and principal.org_name == "ORGNAME"
    assert principal.is_site_admin and principal.is_admin and not principal.is_org_admin
    assert principal.has("perm_audit")
    assert principal.authkey_expiration == int(NOW) + 60
    actor = principal.actor()
    assert (actor.user_id, actor.authkey_id, actor.client_ip) == (3, 7, "1.2.3.4")


def test_an_expired_key_fails_with_the_generic_message():
    failure = evaluate(_row(expiration=int(NOW) - 1), KEY, ip="1.2.3.4", now=NOW)
    assert (failure.reason, failure.message) == ("expired", AUTH_FAILED)
    assert failure.title == "Login attempt by expired auth key 7."


def test_an_address_outside_the_allowed_list_is_refused():
    failure = evaluate(_row(allowed_ips=["10.0.0.0/8"]), KEY, ip="1.2.3.4", now=NOW)
    assert (failure.reason, failure.message) == ("ip_refused", IP_REFUSED)
    assert isinstance(evaluate(_row(allowed_ips=["1.2.3.0/24"]), KEY, ip="1.2.3.4", now=NOW),
                      Principal)


def test_a_disabled_user_is_refused_with_misps_message():
    failure = evaluate(_row(disabled=True), KEY, ip=None, now=NOW)
    assert (failure.reason, failure.message) == ("disabled_user", USER_DISABLED)


def test_a_role_without_perm_auth_makes_the_key_invalid():
    role = FULL_ROLE.model_copy(update={"perm_auth": False}).model_dump(mode="json")
    failure = evaluate(_row(role_state=role), KEY, ip=None, now=NOW)
    assert (failure.reason, failure.message) == ("no_perm_auth", AUTH_FAILED)
    assert evaluate(_row(role_state=None), KEY, ip=None, now=NOW).reason == "no_perm_auth"


def test_an_expired_user_is_refused():
    past = datetime.fromtimestamp(NOW - 10, UTC)
    assert evaluate(_row(user_expiration=past), KEY, ip=None, now=NOW).reason == "expired_user"


def test_a_read_only_key_gives_a_reduced_principal():
    principal = evaluate(_row(read_only=True), KEY, ip=None, now=NOW)
    assert principal.read_only and not principal.is_site_admin and principal.has("perm_audit")


def test_unknown_permission_names_are_bugs():
    principal = evaluate(_row(), KEY, ip=None, now=NOW)
    with pytest.raises(ValueError):
        principal.has("perm_typo")


def test_the_expiration_header_is_iso():
    assert expiration_iso(0) == "1970-01-01T00:00:00+00:00"

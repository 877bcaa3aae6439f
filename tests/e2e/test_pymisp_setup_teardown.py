"""A PyMISP script as MISP's users write them, with no sleep anywhere: set up an organisation
with users and keys, use them at once across services, tear it all down in MISP's order
(users, then the organisation), and run the same script a second time: it must not trip over
what the first run left behind (nothing is left behind)."""

from __future__ import annotations

import uuid

from pymisp import MISPOrganisation, MISPUser, PyMISP

from .support import GATEWAY, admin_key

SERVICES_BUT_IDENTITY = ("orgs", "audit", "jobs", "mailer", "settings")


def run_script(misp: PyMISP, org_name: str, emails: list[str]) -> None:
    org = MISPOrganisation()
    org.name = org_name
    added = misp.add_organisation(org, pythonify=True)
    assert isinstance(added, MISPOrganisation), added

    users: list[MISPUser] = []
    for email in emails:
        user = MISPUser()
        user.email, user.org_id, user.role_id = email, added.id, 3
        created = misp.add_user(user, pythonify=True)
        assert isinstance(created, MISPUser), created
        users.append(created)

    for user in users:
        as_user = PyMISP(GATEWAY, user.authkey, ssl=False, timeout=20)
        me = as_user.get_user(pythonify=True)
        assert isinstance(me, MISPUser) and me.email == user.email, me
        assert as_user.get_organisation(added.id, pythonify=True).name == org_name
        second = misp.get_new_authkey(user)  # a second key, used at once elsewhere
        as_user_again = PyMISP(GATEWAY, second, ssl=False, timeout=20)
        for service in SERVICES_BUT_IDENTITY:
            whoami = as_user_again.direct_call(f"api/v1/{service}/whoami")
            assert whoami["User"]["email"] == user.email, (service, whoami)

    logged = misp.search_logs(model="Organisation", action="add",
                              title=f"Organisation ({added.id}): {org_name}")
    assert len(logged) == 1, logged

    for user in users:
        assert misp.delete_user(user)["success"] is True
    deleted = misp.delete_organisation(added)
    assert deleted.get("success") is True, deleted
    assert misp.organisation_exists(added.id) is False


def test_a_pymisp_setup_and_teardown_runs_twice_and_leaves_nothing_behind() -> None:
    misp = PyMISP(GATEWAY, admin_key(), ssl=False, timeout=30)
    tag = uuid.uuid4().hex[:10]
    org_name = f"PyMISP script {tag}"
    emails = [f"script-{tag}-{n}@example.test" for n in range(3)]
    for _ in range(2):
        run_script(misp, org_name, emails)
    assert misp.organisations(scope="all", search=org_name, pythonify=True) == []
    left = [u for u in misp.users(pythonify=True) if u.email in emails]
    assert left == []

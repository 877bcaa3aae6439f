"""Organisations through the gateway with PyMISP's own calls (ARCHITECTURE §10), as the site
admin that identity seeded on first run (`.local/admin.authkey`)."""

from __future__ import annotations

import uuid

import pytest
from pymisp import MISPOrganisation, PyMISP

from .support import GATEWAY, admin_key


@pytest.fixture(scope="module")
def misp() -> PyMISP:
    return PyMISP(GATEWAY, admin_key(), ssl=False, timeout=20)


def _org(**fields: object) -> MISPOrganisation:
    org = MISPOrganisation()
    org.name = f"PyMISP org {uuid.uuid4().hex[:10]}"
    for key, value in fields.items():
        setattr(org, key, value)
    return org


def test_the_host_organisation_is_listed(misp: PyMISP) -> None:
    orgs = misp.organisations(pythonify=True)
    assert isinstance(orgs, list)
    host = [o for o in orgs if int(o.id) == 1]
    assert host and host[0].name  # "ORGNAME" unless MISP.org says otherwise


def test_add_get_exists_update_and_delete_by_id(misp: PyMISP) -> None:
    added = misp.add_organisation(_org(description="from PyMISP", nationality="Belgium"),
                                  pythonify=True)
    assert isinstance(added, MISPOrganisation), added
    assert added.id and added.uuid and added.description == "from PyMISP"
    fetched = misp.get_organisation(added.id, pythonify=True)
    assert isinstance(fetched, MISPOrganisation) and fetched.name == added.name
    assert misp.organisation_exists(added.id) is True
    assert misp.organisation_exists(added.uuid) is True

    found = misp.organisations(scope="all", search=added.name, pythonify=True)
    assert [o.id for o in found] == [added.id]

    fetched.name = f"{added.name} renamed"
    fetched.sector = "Telecom"
    updated = misp.update_organisation(fetched)  # the whole fetched record goes back
    assert "errors" not in updated, updated
    assert updated["Organisation"]["name"] == f"{added.name} renamed"
    assert updated["Organisation"]["sector"] == "Telecom"
    again = misp.get_organisation(added.uuid, pythonify=True)
    assert isinstance(again, MISPOrganisation) and again.sector == "Telecom"

    deleted = misp.delete_organisation(added.id)
    assert deleted["success"] is True and deleted["message"] == "Organisation deleted"
    assert misp.organisation_exists(added.id) is False


def test_update_and_delete_by_uuid(misp: PyMISP) -> None:
    wanted = str(uuid.uuid4())
    added = misp.add_organisation(_org(uuid=wanted, local=False), pythonify=True)
    assert isinstance(added, MISPOrganisation), added
    assert added.uuid == wanted and added.local is False
    assert [o.uuid for o in misp.organisations(scope="external", search=added.name,
                                               pythonify=True)] == [wanted]
    changed = MISPOrganisation()
    changed.from_dict(uuid=wanted, name=added.name, contacts="soc@example.test")
    # PyMISP edits by uuid; its pythonified answer is the object it sent, so read the JSON.
    updated = misp.update_organisation(changed)
    assert "errors" not in updated, updated
    assert updated["Organisation"]["contacts"] == "soc@example.test"
    assert updated["Organisation"]["id"] == added.id
    result = misp.delete_organisation(changed)
    assert result["success"] is True
    assert misp.organisation_exists(wanted) is False


def test_errors_come_back_as_misp_errors(misp: PyMISP) -> None:
    added = misp.add_organisation(_org(), pythonify=True)
    assert isinstance(added, MISPOrganisation), added
    try:
        duplicate = misp.add_organisation(_org(name=added.name))
        assert "errors" in duplicate
        status, body = duplicate["errors"]
        assert status == 403
        assert body["errors"] == {"name": ["An organisation with this name already exists."]}
        missing = misp.get_organisation(987654321)
        assert "errors" in missing and missing["errors"][0] == 404
    finally:
        assert misp.delete_organisation(added.id)["success"] is True

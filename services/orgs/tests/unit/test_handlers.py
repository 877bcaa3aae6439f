"""The orgs handlers on in-memory fakes of their ports (fakes.py): the commands (add, edit,
delete, logo, merge start, first run), their one transaction and its retry, and the consumer's
reactions (the user projection, the merge saga's last step, the undone deletion)."""

from __future__ import annotations

import ast
import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.identity import UserCreated, UserDeleted, UserState, UserUpdated
from misp_contracts.events.orgs import (
    OrganisationCreated,
    OrganisationDeleted,
    OrganisationMerged,
    OrganisationMergeStarted,
    OrganisationUpdated,
)
from misp_platform.eventstore import ConcurrencyError
from orgs.domain.errors import (
    InvalidLogoError,
    OrganisationInUseError,
    OrganisationNotFoundError,
    OrganisationRefusedError,
    OrganisationValidationError,
)
from orgs.domain.model import DELETED, MERGING, NAME_TAKEN, UUID_TAKEN, Organisation
from orgs.handlers import organisations as commands
from orgs.handlers.reactions import (
    complete_pending_merges,
    when_merge_started_complete_if_empty,
    when_user_deleted_untrack_member,
    when_user_saved_track_member,
)

from .fakes import FakeOrgsStore, FakeUnitOfWork
from .test_domain import png

ADMIN = Actor(user_id=7, email="admin@example.test", org_id=1)
LIMITS = commands.LogoLimits(max_bytes=64_000, max_width=256, max_height=256)
A_UUID = "5d6c4f0e-5b0a-4d8e-9a51-0b6f3c2e7a10"


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


async def add(uow: FakeUnitOfWork, name: str = "Acme", **body: Any) -> Organisation:
    return await commands.add_organisation(uow, body={"name": name, **body}, actor=ADMIN,
                                           created_by=7)


def user(org_id: int, user_id: int = 501) -> UserState:
    return UserState(id=user_id, uuid=str(uuid.uuid4()), email=f"u{user_id}@example.test",
                     org_id=org_id, role_id=3)


def envelope(event: DomainEvent, version: int | None = None) -> Envelope:
    return Envelope(source="/identity", type=event.type, subject="s", streamversion=version,
                    data=event.model_dump(mode="json"))


def moved(who: UserState, to_org: int, version: int) -> Envelope:
    after = who.model_copy(update={"org_id": to_org})
    return envelope(UserUpdated(user=after, changes={"org_id": (who.org_id, to_org)}), version)


# ---- add --------------------------------------------------------------------------------------


async def test_add_appends_the_creation_and_saves_the_read_model_in_one_commit(
        uow: FakeUnitOfWork) -> None:
    org = await add(uow, " Acme ", sector="Energy")
    store = uow.store
    assert org.state.id == 2 and org.state.name == "Acme" and org.state.created_by == 7
    [appended] = store.published
    assert appended.org_id == 2 and appended.expected_version == 0
    assert isinstance(appended.events[0], OrganisationCreated) and appended.actor == ADMIN
    assert store.row(2)["name"] == "Acme" and store.row(2)["sector"] == "Energy"
    assert store.row(2)["version"] == 1 and store.row(2)["status"] == "active"
    assert (uow.commits, uow.rollbacks) == (1, 0)


async def test_add_refuses_a_name_taken_whatever_its_case_and_writes_nothing(
        uow: FakeUnitOfWork) -> None:
    await add(uow, "Acme")
    with pytest.raises(OrganisationValidationError) as refused:
        await add(uow, "ACME")
    assert refused.value.errors == {"name": [NAME_TAKEN]}
    assert len(uow.store.published) == 1 and list(uow.store.data.rows) == [2]
    assert uow.rollbacks == 1


async def test_add_refuses_a_uuid_taken_and_names_both_fields_when_both_are(
        uow: FakeUnitOfWork) -> None:
    await add(uow, "Acme", uuid=A_UUID)
    with pytest.raises(OrganisationValidationError) as refused:
        await add(uow, "Other", uuid=A_UUID.upper())
    assert refused.value.errors == {"uuid": [UUID_TAKEN]}
    with pytest.raises(OrganisationValidationError) as both:
        await add(uow, "acme", uuid=A_UUID)
    assert both.value.errors == {"name": [NAME_TAKEN], "uuid": [UUID_TAKEN]}
    assert len(uow.store.published) == 1


async def test_the_name_and_uuid_of_a_deleted_organisation_are_free_again(
        uow: FakeUnitOfWork) -> None:
    first = await add(uow, "Acme", uuid=A_UUID)
    await commands.delete_organisation(uow, key=str(first.state.id), actor=ADMIN)
    second = await add(uow, "Acme", uuid=A_UUID)
    assert second.state.id != first.state.id
    assert uow.store.row(first.state.id)["status"] == DELETED


async def test_bad_input_is_refused_before_any_transaction(uow: FakeUnitOfWork) -> None:
    with pytest.raises(OrganisationValidationError):
        await add(uow, "")
    assert uow.opened == 0


# ---- one transaction, retried once ------------------------------------------------------------


async def test_a_lost_race_is_retried_once_in_a_new_transaction(uow: FakeUnitOfWork) -> None:
    org = await add(uow)
    uow.store.lose_races = 1
    edited = await commands.edit_organisation(uow, key=str(org.state.id),
                                              body={"sector": "Water"}, actor=ADMIN)
    assert edited.state.sector == "Water" and edited.version == 2
    assert uow.opened == 3 and uow.rollbacks == 1 and uow.commits == 2
    assert [a.types for a in uow.store.published][-1] == [OrganisationUpdated.type]


async def test_a_second_lost_race_gives_up_with_a_concurrency_error_and_writes_nothing(
        uow: FakeUnitOfWork) -> None:
    org = await add(uow)
    uow.store.lose_races = 2
    with pytest.raises(ConcurrencyError):
        await commands.edit_organisation(uow, key=str(org.state.id),
                                         body={"sector": "Water"}, actor=ADMIN)
    assert uow.rollbacks == 2 and len(uow.store.published) == 1
    assert uow.store.row(org.state.id)["sector"] == ""


async def test_a_name_taken_past_the_check_is_the_read_models_validation_error() -> None:
    """The unique index is the guarantee: a twin written by a racing transaction between the
    check and the save makes the same refusal, not a retry."""

    class RacedStore(FakeOrgsStore):
        async def name_taken(self, name: str, *, other_than: int | None = None) -> bool:
            return False  # the check ran before the other transaction committed

    uow = FakeUnitOfWork(RacedStore())
    await add(uow, "Acme")
    with pytest.raises(OrganisationValidationError) as refused:
        await add(uow, "acme")
    assert refused.value.errors == {"name": [NAME_TAKEN]}
    assert uow.opened == 2 and len(uow.store.published) == 1


# ---- edit -------------------------------------------------------------------------------------


async def test_edit_by_uuid_records_the_changes_and_an_unchanged_body_appends_nothing(
        uow: FakeUnitOfWork) -> None:
    org = await add(uow, "Acme", uuid=A_UUID)
    edited = await commands.edit_organisation(uow, key=A_UUID.upper(),
                                              body={"name": "ACME", "sector": "Energy"},
                                              actor=ADMIN)
    [_, update] = uow.store.published
    assert update.expected_version == 1 and isinstance(update.events[0], OrganisationUpdated)
    assert update.events[0].changes == {"name": ("Acme", "ACME"), "sector": ("", "Energy")}
    assert uow.store.row(org.state.id)["name"] == "ACME" and edited.version == 2
    assert uow.store.locked[-1] == (org.state.id,)
    again = await commands.edit_organisation(uow, key=str(org.state.id),
                                             body={"sector": "Energy"}, actor=ADMIN)
    assert again.version == 2 and len(uow.store.published) == 2


async def test_edit_refuses_another_organisations_name_and_an_unknown_key(
        uow: FakeUnitOfWork) -> None:
    await add(uow, "Acme")
    other = await add(uow, "Globex")
    with pytest.raises(OrganisationValidationError) as refused:
        await commands.edit_organisation(uow, key=str(other.state.id), body={"name": "acme"},
                                         actor=ADMIN)
    assert refused.value.errors == {"name": [NAME_TAKEN]}
    with pytest.raises(OrganisationNotFoundError):
        await commands.edit_organisation(uow, key="999", body={"name": "X"}, actor=ADMIN)
    assert uow.store.row(other.state.id)["name"] == "Globex"


# ---- delete -----------------------------------------------------------------------------------


async def test_delete_is_refused_while_users_remain_and_says_how_many(
        uow: FakeUnitOfWork) -> None:
    org = await add(uow)
    for user_id in (1, 2):
        await uow.store.put_member(user_id, org_id=org.state.id, email=f"{user_id}@x.test",
                                   version=1)
    with pytest.raises(OrganisationInUseError) as refused:
        await commands.delete_organisation(uow, key=str(org.state.id), actor=ADMIN)
    assert "still has 2 user(s)" in refused.value.errors["id"][0]
    assert uow.store.row(org.state.id)["status"] == "active"
    assert len(uow.store.published) == 1 and uow.rollbacks == 1


async def test_delete_closes_the_organisation_and_drops_its_logo(uow: FakeUnitOfWork) -> None:
    org = await add(uow)
    await commands.set_logo(uow, key=str(org.state.id), data=png(), actor=ADMIN, limits=LIMITS)
    assert await commands.delete_organisation(uow, key=str(org.state.id), actor=ADMIN) \
        == org.state.id
    assert isinstance(uow.store.published[-1].events[0], OrganisationDeleted)
    row = uow.store.row(org.state.id)
    assert row["status"] == DELETED and row["logo"] is None and row["logo_sha256"] is None
    assert await uow.store.find_id(org.state.id) is None
    with pytest.raises(OrganisationNotFoundError):
        await commands.delete_organisation(uow, key=str(org.state.id), actor=ADMIN)


async def test_delete_is_refused_for_the_target_of_a_running_merge(uow: FakeUnitOfWork) -> None:
    source, target = await add(uow, "Source"), await add(uow, "Target")
    await commands.start_merge(uow, source_key=str(source.state.id),
                               target_key=target.state.id, actor=ADMIN, requested_by=7)
    with pytest.raises(OrganisationRefusedError) as refused:
        await commands.delete_organisation(uow, key=str(target.state.id), actor=ADMIN)
    assert refused.value.errors == {"id": ["Another organisation is being merged into this one."]}


# ---- logo -------------------------------------------------------------------------------------


async def test_a_logo_is_stored_with_its_hash_once_and_removed(uow: FakeUnitOfWork) -> None:
    org = await add(uow)
    image = png()
    stored = await commands.set_logo(uow, key=str(org.state.id), data=image, actor=ADMIN,
                                     limits=LIMITS)
    digest = hashlib.sha256(image).hexdigest()
    assert stored.state.logo_sha256 == digest
    assert uow.store.row(org.state.id)["logo"] == image
    same = await commands.set_logo(uow, key=str(org.state.id), data=image, actor=ADMIN,
                                   limits=LIMITS)
    assert same.version == stored.version and len(uow.store.published) == 2
    # An edit keeps the stored image; a removal drops it.
    await commands.edit_organisation(uow, key=str(org.state.id), body={"sector": "Water"},
                                     actor=ADMIN)
    assert uow.store.row(org.state.id)["logo"] == image
    removed = await commands.set_logo(uow, key=str(org.state.id), data=None, actor=ADMIN,
                                      limits=LIMITS)
    assert removed.state.logo_sha256 is None and uow.store.row(org.state.id)["logo"] is None


async def test_a_logo_that_is_no_acceptable_png_is_refused_before_any_transaction(
        uow: FakeUnitOfWork) -> None:
    org = await add(uow)
    opened = uow.opened
    with pytest.raises(InvalidLogoError):
        await commands.set_logo(uow, key=str(org.state.id), data=png(512, 512), actor=ADMIN,
                                limits=LIMITS)
    assert uow.opened == opened


# ---- merge start ------------------------------------------------------------------------------


async def test_a_merge_start_closes_the_source_and_records_the_running_merge(
        uow: FakeUnitOfWork) -> None:
    target, source = await add(uow, "Target"), await add(uow, "Source")
    started = await commands.start_merge(uow, source_key=str(source.state.id),
                                         target_key=target.state.uuid, actor=ADMIN,
                                         requested_by=7)
    assert (started.source_id, started.target_id) == (source.state.id, target.state.id)
    [merge] = uow.store.data.merges.values()
    assert merge.merge_id == started.merge_id and merge.status == "running"
    assert merge.requested_by == 7 and merge.actor == ADMIN
    assert merge.correlation_id == started.merge_id  # none given: the merge's id
    appended = uow.store.published[-1]
    assert isinstance(appended.events[0], OrganisationMergeStarted)
    assert appended.correlation_id == started.merge_id
    assert uow.store.row(source.state.id)["status"] == MERGING
    assert uow.store.locked[-1] == (target.state.id, source.state.id)  # in id order


async def test_a_merge_start_without_a_valid_target_is_refused_and_writes_nothing(
        uow: FakeUnitOfWork) -> None:
    source = await add(uow)
    with pytest.raises(OrganisationRefusedError) as no_target:
        await commands.start_merge(uow, source_key=str(source.state.id), target_key=" ",
                                   actor=ADMIN, requested_by=7)
    assert no_target.value.errors == {"target": ["Invalid target organisation."]}
    for target in ("999", str(source.state.id)):
        with pytest.raises(OrganisationRefusedError):
            await commands.start_merge(uow, source_key=str(source.state.id),
                                       target_key=target, actor=ADMIN, requested_by=7)
    assert uow.store.data.merges == {} and len(uow.store.published) == 1


# ---- first run --------------------------------------------------------------------------------


async def test_the_host_organisation_is_created_once_named_by_misp_org(
        uow: FakeUnitOfWork) -> None:
    uow.store.data.settings["MISP.org"] = "Host CERT"
    assert await commands.ensure_host_organisation(uow) is True
    assert await commands.ensure_host_organisation(uow) is False
    [created] = uow.store.published
    assert created.org_id == 1 and created.actor == Actor.system()
    assert created.events[0].reason == "first-run"
    assert uow.store.row(1)["name"] == "Host CERT" and uow.store.row(1)["type"] == "ADMIN"


async def test_a_host_name_already_taken_is_suffixed_and_a_lost_first_run_writes_nothing(
        uow: FakeUnitOfWork) -> None:
    await add(uow, "ORGNAME")
    uow.store.lose_races = 1  # another process created organisation 1 meanwhile
    assert await commands.ensure_host_organisation(uow) is False
    assert 1 not in uow.store.data.rows and uow.rollbacks == 1
    assert await commands.ensure_host_organisation(uow) is True
    assert uow.store.row(1)["name"] == "ORGNAME (1)"


# ---- reactions --------------------------------------------------------------------------------


async def test_the_user_projection_counts_users_and_ignores_older_events() -> None:
    store = FakeOrgsStore()
    uow = FakeUnitOfWork(store)
    acme, globex = await add(uow, "Acme"), await add(uow, "Globex")
    alice = user(acme.state.id)
    await when_user_saved_track_member(store, envelope(UserCreated(user=alice), 1))
    assert await store.user_count(acme.state.id) == 1
    await when_user_saved_track_member(store, moved(alice, globex.state.id, 3))
    await when_user_saved_track_member(store, envelope(UserCreated(user=alice), 1))  # a replay
    assert await store.user_count(acme.state.id) == 0
    assert await store.user_count(globex.state.id) == 1
    await when_user_deleted_untrack_member(store, envelope(UserDeleted(
        user_id=alice.id, uuid=alice.uuid, email=alice.email, org_id=alice.org_id), 4))
    await when_user_saved_track_member(store, envelope(UserCreated(user=alice), 1))
    assert await store.user_count(globex.state.id) == 0
    held = await store.member(alice.id)
    assert held is not None and held.deleted and held.org_id == globex.state.id


async def test_the_last_user_moved_out_completes_the_merge_once() -> None:
    store = FakeOrgsStore()
    uow = FakeUnitOfWork(store)
    source, target = await add(uow, "Source"), await add(uow, "Target")
    users = [user(source.state.id, 501), user(source.state.id, 502)]
    for u in users:
        await when_user_saved_track_member(store, envelope(UserCreated(user=u), 1))
    started = await commands.start_merge(uow, source_key=str(source.state.id),
                                         target_key=str(target.state.id), actor=ADMIN,
                                         requested_by=7, correlation_id="req-1")
    await when_user_saved_track_member(store, moved(users[0], target.state.id, 2))
    assert store.data.merges[started.merge_id].status == "running"  # one user left
    last = moved(users[1], target.state.id, 2)
    await when_user_saved_track_member(store, last)
    merge = store.data.merges[started.merge_id]
    assert merge.status == "completed" and merge.users_moved == 2
    done = store.published[-1]
    assert done.types == [OrganisationMerged.type, OrganisationDeleted.type]
    assert done.actor == ADMIN and done.correlation_id == "req-1"
    assert done.causation_id == last.id
    assert isinstance(done.events[0], OrganisationMerged) and done.events[0].users_moved == 2
    row = store.row(source.state.id)
    assert row["status"] == DELETED and row["merged_into"] == target.state.id
    # A redelivery changes nothing.
    await when_user_saved_track_member(store, last)
    await when_merge_started_complete_if_empty(store, envelope(
        OrganisationMergeStarted(merge_id=started.merge_id, source=source.ref,
                                 target=target.ref)))
    assert store.published[-1] is done


async def test_an_empty_source_is_merged_when_the_merge_start_comes_back() -> None:
    store = FakeOrgsStore()
    uow = FakeUnitOfWork(store)
    source, target = await add(uow, "Source"), await add(uow, "Target")
    started = await commands.start_merge(uow, source_key=str(source.state.id),
                                         target_key=str(target.state.id), actor=ADMIN,
                                         requested_by=7)
    await when_merge_started_complete_if_empty(store, envelope(OrganisationMergeStarted(
        merge_id=started.merge_id, source=source.ref, target=target.ref)))
    assert store.data.merges[started.merge_id].status == "completed"
    assert store.row(source.state.id)["merged_into"] == target.state.id


async def test_pending_merges_are_completed_at_start_up_in_one_commit() -> None:
    uow = FakeUnitOfWork()
    source, target = await add(uow, "Source"), await add(uow, "Target")
    started = await commands.start_merge(uow, source_key=str(source.state.id),
                                         target_key=str(target.state.id), actor=ADMIN,
                                         requested_by=7)
    commits = uow.commits
    assert await complete_pending_merges(uow) == 1
    assert uow.store.data.merges[started.merge_id].status == "completed"
    assert uow.commits == commits + 1
    assert await complete_pending_merges(uow) == 0


async def test_a_user_landing_in_a_deleted_organisation_brings_it_back_renamed_if_needed() -> None:
    store = FakeOrgsStore()
    uow = FakeUnitOfWork(store)
    org = await add(uow, "Acme")
    await commands.delete_organisation(uow, key=str(org.state.id), actor=ADMIN)
    await add(uow, "acme")  # the name was taken again meanwhile
    arrival = envelope(UserCreated(user=user(org.state.id)), 1)
    await when_user_saved_track_member(store, arrival)
    restored = store.published[-1]
    assert restored.types == [OrganisationCreated.type]
    assert restored.events[0].reason == "restored"
    assert restored.actor == Actor.system() and restored.causation_id == arrival.id
    row = store.row(org.state.id)
    assert row["status"] == "active" and row["name"] == f"Acme (restored {org.state.id})"
    assert row["uuid"] == org.state.uuid


async def test_a_user_landing_in_a_merged_organisation_does_not_bring_it_back() -> None:
    store = FakeOrgsStore()
    uow = FakeUnitOfWork(store)
    source, target = await add(uow, "Source"), await add(uow, "Target")
    await commands.start_merge(uow, source_key=str(source.state.id),
                               target_key=str(target.state.id), actor=ADMIN, requested_by=7)
    assert await complete_pending_merges(uow) == 1
    appended = len(store.published)
    await when_user_saved_track_member(store, envelope(UserCreated(user=user(source.state.id))))
    assert len(store.published) == appended
    assert store.row(source.state.id)["status"] == DELETED


# ---- the skeleton -----------------------------------------------------------------------------


def test_the_handlers_hold_no_sql_and_no_concrete_adapter() -> None:
    """Handlers reach the database through the ports only (adapters/ports.py)."""
    handlers = Path(commands.__file__).parent
    for module in handlers.glob("*.py"):
        tree = ast.parse(module.read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                     for a in n.names}
        assert not {m for m in imported if m.split(".")[0] == "sqlalchemy"}, module.name
        assert not {m for m in imported if m.startswith("orgs.adapters")
                    and m != "orgs.adapters.ports"}, module.name

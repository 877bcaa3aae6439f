"""No secret in any event or log line (issue 4 §9): known passwords and raw keys go through add
user, change_pw, login (good and bad) and a new authkey; then every `misp.*` topic is read from
its beginning, and identity's log files, and none of those secrets may appear anywhere."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymisp import MISPUser, PyMISP

from misp_platform.kafka import client_options

from .support import GATEWAY, admin_key
from .test_identity_pymisp import wait_everywhere

TOPICS = re.compile(r"^misp\.")


def _password() -> str:
    # Policy-compliant, and unique enough that a hit can only be this test's.
    return f"Pw-{secrets.token_hex(10)}-Zx9"


def _variants(secret: str) -> list[bytes]:
    """The secret as bytes, and as it would look inside a JSON string."""
    return list({secret.encode(), json.dumps(secret)[1:-1].encode()})


async def read_all_topics(bootstrap: str) -> tuple[int, list[tuple[str, bytes]]]:
    """Every record of every `misp.*` topic, from the beginning to the current end, no group."""
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if TOPICS.match(t))
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    partitions = [TopicPartition(d["topic"], p["partition"]) for d in described
                  for p in d["partitions"]]
    consumer = AIOKafkaConsumer(**client_options(bootstrap), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    blobs: list[tuple[str, bytes]] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp, end in ends.items() if end > 0}
        deadline = time.monotonic() + 120
        while pending:
            assert time.monotonic() < deadline, f"topics not read to their end: {pending}"
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for r in records:
                    where = f"{tp.topic}:{tp.partition}:{r.offset}"
                    blobs.append((where, (r.key or b"") + b"\0" + (r.value or b"") + b"\0"
                                  + b"\0".join(k.encode() + b"=" + (v or b"")
                                               for k, v in r.headers)))
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return len(names), blobs
    finally:
        await consumer.stop()


def test_no_password_or_raw_key_reaches_kafka_or_identitys_logs() -> None:
    misp = PyMISP(GATEWAY, admin_key(), ssl=False, timeout=20)
    first_password, second_password, wrong_password = _password(), _password(), _password()
    user = MISPUser()
    user.email = f"secrets-{secrets.token_hex(4)}@example.test"
    user.org_id = 1
    user.role_id = 3
    user.password = first_password
    created = misp.add_user(user, pythonify=True)
    assert isinstance(created, MISPUser), created
    try:
        first_key = created.authkey
        wait_everywhere(first_key, 200)

        as_user = PyMISP(GATEWAY, first_key, ssl=False, timeout=20)
        assert as_user.change_user_password(second_password)["message"] == "Password Changed."
        with httpx.Client(base_url=GATEWAY, timeout=20) as http:
            bad = http.post("/users/login", json={"email": user.email, "password": wrong_password},
                            headers={"Accept": "application/json"})
            refusal = "Invalid username or password, try again"  # MISP's words, for any refusal
            assert (bad.status_code, bad.json()) == (403, {"name": refusal, "message": refusal,
                                                            "url": "/users/login"}), bad.text
            good = http.post("/users/login",
                             json={"email": user.email, "password": second_password},
                             headers={"Accept": "application/json"})
            assert good.status_code == 200, good.text
            session = good.cookies.get("MISP-session")
            assert session
            reset = http.post(f"/users/resetauthkey/{created.id}",
                              headers={"Authorization": admin_key(), "Accept": "application/json"})
            assert reset.status_code == 200, reset.text
            reset_key = reset.json()["message"].removeprefix("Authkey updated: ")
        new_key = misp.get_new_authkey(created)
        assert len(new_key) == 40
        # The key's event is committed after every other change: once it works elsewhere, the relay
        # has published everything before it (commit order).
        wait_everywhere(new_key, 200)

        secrets_used = {"first password": first_password, "changed password": second_password,
                        "wrong password": wrong_password, "raw key (add_user)": first_key,
                        "raw key (resetauthkey)": reset_key, "raw key (new authkey)": new_key,
                        "session token": session}
        n_topics, records = asyncio.run(read_all_topics(os.environ["MISP_KAFKA_BOOTSTRAP_SERVERS"]))
        assert n_topics >= 5 and records
        leaks = [(what, where) for where, blob in records for what, secret in secrets_used.items()
                 if any(v in blob for v in _variants(secret))]
        assert not leaks, leaks[:10]
        # The user's key ids do appear (the audit needs them): the scan did see this test's events.
        assert any(created.email.encode() in blob for _, blob in records)

        logs = sorted((Path(os.environ.get("MISP_STATE_DIR", ".local")) / "logs").glob(
            "identity-*.log"))
        assert logs, "no identity log file (is the stack running under supervisord?)"
        for log in logs:
            content = log.read_bytes()
            for what, secret in secrets_used.items():
                assert not any(v in content for v in _variants(secret)), f"{what} in {log.name}"
    finally:
        deleted = misp.delete_user(created)  # their keys and sessions go with them
        assert deleted.get("success") is True, deleted
    print(f"scanned {len(records)} records of {n_topics} topics and {len(logs)} log files")

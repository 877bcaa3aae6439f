"""The abuse detector across services, on the running stack (issue 15, item 2): bad keys from one
address spread over three services get that address blocked in every service (even with a valid
key, even at the password login) while another address still works; the block is an
`auth_alert` on the SIEM topic; it ends after the cool-down. Keys sharing a prefix, tried from
many addresses, get that prefix blocked.

Requests go straight to the services' ports from loopback, a trusted proxy, with
`X-Forwarded-For` naming addresses of the documentation ranges, fresh on every run (loopback
itself is exempt from every limit: MISP_ABUSE_EXEMPT_NETWORKS)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from audit.settings import AuditSettings
from misp_platform.kafka import client_options, topic_partitions
from misp_platform.testing import load_script

from .support import admin_key, until

ROOT = Path(__file__).resolve().parents[2]
# deploy/services.tsv, read by the gateway's renderer (the one parser of it)
PORTS: dict[str, int] = load_script(ROOT / "deploy" / "gateway" / "render.py",
                                    "gateway_render_ports").load_services()
# One authenticated read of each service.
READS = {"identity": "/admin/users/index", "orgs": "/organisations/index",
         "audit": "/admin/logs/index", "jobs": "/jobs/index",
         "mailer": "/api/v1/mailer/mails", "settings": "/servers/serverSettings"}
SPREAD_OVER = ("orgs", "jobs", "settings")
SIEM_TOPIC = "misp.audit.log.v1"
DETECTOR = AuditSettings()  # the stack's settings: the same environment (.local/env)


def fresh_address(net: str = "198.51.100") -> str:
    return f"{net}.{secrets.randbelow(254) + 1}"


def read(service: str, key: str, address: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{PORTS[service]}{READS[service]}", timeout=10,
                     headers={"Authorization": key, "X-Forwarded-For": address,
                              "Accept": "application/json"})


def statuses(key: str, address: str) -> dict[str, int]:
    return {service: read(service, key, address).status_code for service in READS}


async def _siem_ends(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**client_options(bootstrap), group_id=None)
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, SIEM_TOPIC)
        assert parts, f"{SIEM_TOPIC} has no partitions"
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def _siem_alerts(bootstrap: str, since: dict[TopicPartition, int],
                       address: str) -> list[dict]:
    """The SIEM records after `since` that alert about `address`."""
    consumer = AIOKafkaConsumer(**client_options(bootstrap), group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        ends = await consumer.end_offsets(list(since))
        found = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    body = json.loads(record.value)
                    if body.get("event", {}).get("action") == "auth_alert" and \
                            address in body.get("message", ""):
                        found.append(body)
        return found
    finally:
        await consumer.stop()


def test_bad_keys_from_one_address_over_three_services_block_it_everywhere_until_it_ends():
    bootstrap = DETECTOR.kafka_bootstrap_servers
    siem_since = asyncio.run(_siem_ends(bootstrap))
    key = admin_key()
    attacker, bystander = fresh_address(), fresh_address("203.0.113")
    assert statuses(key, attacker) == dict.fromkeys(READS, 200)

    for n in range(DETECTOR.abuse_address_threshold):
        bad = read(SPREAD_OVER[n % len(SPREAD_OVER)], secrets.token_hex(20), attacker)
        assert bad.status_code == 403, bad.text

    blocked = until(lambda: (s := statuses(key, attacker)) == dict.fromkeys(READS, 429) and s,
                    "the attacker's address refused by every service", timeout_s=30)
    assert blocked
    refused = read("identity", key, attacker)
    seen_blocked = time.monotonic()
    assert refused.json()["name"].startswith("Too many failed authentications")
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= DETECTOR.abuse_block_s
    login = httpx.post(f"http://127.0.0.1:{PORTS['identity']}/users/login", timeout=10,
                       headers={"X-Forwarded-For": attacker},
                       json={"email": "admin@admin.test", "password": "whatever"})
    assert login.status_code == 429
    assert statuses(key, bystander) == dict.fromkeys(READS, 200)

    alerts = until(lambda: asyncio.run(_siem_alerts(bootstrap, siem_since, attacker)),
                   "the block's auth_alert on the SIEM topic", timeout_s=30)
    assert len(alerts) == 1
    assert alerts[0]["misp"]["log"]["model"] == "Bruteforce"

    until(lambda: statuses(key, attacker) == dict.fromkeys(READS, 200),
          "the attacker's address served again once the block ended",
          timeout_s=DETECTOR.abuse_block_s + 15)
    # not before the end the 429 announced (a second's rounding aside)
    assert time.monotonic() - seen_blocked >= retry_after - 1


def test_bad_keys_sharing_a_prefix_from_many_addresses_get_the_prefix_blocked():
    prefix = secrets.token_hex(2)
    for n in range(DETECTOR.abuse_key_prefix_threshold):
        guess = prefix + secrets.token_hex(18)
        address = f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
        assert read(SPREAD_OVER[n % len(SPREAD_OVER)], guess, address).status_code == 403

    def refused_everywhere() -> bool:
        guess = prefix + secrets.token_hex(18)
        return all(read(s, guess, fresh_address("192.0.2")).status_code == 429 for s in READS)

    until(refused_everywhere, "keys with the guessed prefix refused by every service",
          timeout_s=30)
    other = secrets.token_hex(20)
    while other.startswith(prefix):
        other = secrets.token_hex(20)
    assert read("orgs", other, fresh_address("192.0.2")).status_code == 403

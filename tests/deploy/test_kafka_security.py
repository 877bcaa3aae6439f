"""Kafka as `make up` runs it trusts nobody: a client without credentials, or with a wrong
password, gets nothing; each service is its own principal, which may write only the topics the
catalogue gives it and read only what its consumers subscribe to; the running services use those
principals, and none of their programs holds the admin's password."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from misp_platform.testing import required_env

SERVICES = ["identity", "orgs", "audit", "jobs", "mailer", "settings"]


def bootstrap() -> str:
    return required_env("MISP_KAFKA_BOOTSTRAP_SERVERS")


def password_of(principal: str) -> str:
    state = Path(required_env("MISP_STATE_DIR"))
    return (state / "secrets" / "kafka" / principal).read_text(encoding="utf-8").strip()


def as_principal(principal: str, password: str | None = None) -> dict[str, object]:
    return {"bootstrap_servers": bootstrap(), "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": principal,
            "sasl_plain_password": password if password is not None else password_of(principal)}


async def test_a_client_without_credentials_or_with_a_wrong_password_gets_nothing() -> None:
    anonymous = AIOKafkaAdminClient(bootstrap_servers=bootstrap(), request_timeout_ms=3000)
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(anonymous.start(), 10)
    await anonymous.close()
    impostor = AIOKafkaAdminClient(**as_principal("misp_orgs", "not-the-password"),
                                   request_timeout_ms=3000)
    with pytest.raises(KafkaError):
        await asyncio.wait_for(impostor.start(), 10)
    await impostor.close()


async def test_orgs_principal_cannot_publish_to_identitys_user_topic() -> None:
    producer = AIOKafkaProducer(**as_principal("misp_orgs"), request_timeout_ms=5000)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(producer.send_and_wait(
                "misp.identity.user.v1", b"{}", key=b"forged"), 20)
    finally:
        await producer.stop()


async def test_identitys_principal_cannot_read_the_mailers_mail_topic_nor_another_group() -> None:
    for topic, group in (("misp.mailer.mail.v1", "misp.identity.probe"),
                         ("misp.identity.user.v1", "misp.orgs.probe")):
        consumer = AIOKafkaConsumer(topic, **as_principal("misp_identity"), group_id=group,
                                    auto_offset_reset="earliest", request_timeout_ms=5000)
        with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
            await consumer.start()
            await asyncio.wait_for(consumer.getone(), 20)
        await consumer.stop()


async def test_the_audits_principal_reads_every_domain_topic() -> None:
    consumer = AIOKafkaConsumer("misp.identity.user.v1", "misp.orgs.organisation.v1",
                                **as_principal("misp_audit"), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                request_timeout_ms=5000)
    await consumer.start()
    try:
        records = await asyncio.wait_for(consumer.getmany(timeout_ms=3000), 20)
        assert isinstance(records, dict)  # no authorisation error on fetch
    finally:
        await consumer.stop()


def test_every_service_program_runs_as_its_own_principal() -> None:
    conf = Path(required_env("MISP_STATE_DIR")) / "supervisor" / "supervisord.conf"
    text = conf.read_text(encoding="utf-8")
    assert password_of("admin") not in text
    for service in SERVICES:
        assert f'MISP_KAFKA_USERNAME="misp_{service}"' in text
    assert os.environ.get("MISP_KAFKA_SECURITY_PROTOCOL") == "SASL_PLAINTEXT"

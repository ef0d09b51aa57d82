"""TLS/SASL pass-through (issue 16 section 2): a broker with a SASL_PLAINTEXT listener (PLAIN and
SCRAM-SHA-256 users), and every kind of client we build going through it with only the
``KafkaSettings`` security fields: the admin (catalogue), the publisher, a reader, and Faust."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka import TopicPartition

from agents.app import faust_connection
from infra.kafka.broker import BrokerOptions, LocalBroker, metadata_ok
from infra.testing.pytest_plugin import unique
from streams._reader import reader
from streams.admin import apply_catalogue
from streams.codec import Codec
from streams.errors import BackboneError
from streams.producer import Publisher
from streams.settings import KafkaSettings, SaslMechanism
from streams.topics import Catalogue
from tests.integration._events import call_requested

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

USER, SECRET = "alice", "alice-secret"


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[LocalBroker]:
    broker = LocalBroker(BrokerOptions(heap="256m", sasl_users=((USER, SECRET),), quick_start=True))
    try:
        broker.start(timeout=240)
    except Exception as exc:
        pytest.fail(f"could not start the SASL broker: {exc}")
    try:
        yield broker
    finally:
        broker.stop()


def _sasl(broker: LocalBroker, mechanism: SaslMechanism, password: str = SECRET) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=broker.sasl_bootstrap,
        client_id="backbone-sasl-tests",
        linger_ms=0,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username=USER,
        sasl_password=password,
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_every_client_authenticates_with_the_configured_mechanism(
    sasl_broker: LocalBroker, codec: Codec, mechanism: SaslMechanism
) -> None:
    kafka = _sasl(sasl_broker, mechanism)
    catalogue = Catalogue(prefix=unique("sasl") + ".")
    report = await apply_catalogue(kafka, catalogue)  # the admin client
    assert report.created
    event = call_requested(1)
    async with Publisher(kafka, codec, catalogue) as publisher:
        where = await publisher.publish(event)
    tp = TopicPartition(where.topic, where.partition)
    async with reader(kafka) as consumer:  # a consumer
        consumer.assign([tp])
        consumer.seek(tp, where.offset)
        batch = await consumer.getmany(tp, timeout_ms=30_000)
    [record] = batch[tp][:1]
    assert record.value is not None
    assert (await codec.decode(record.value)).event_id == event.event_id

    import faust

    app = faust.App(unique("sasl-faust"), **faust_connection(kafka), web_enabled=False)
    producer = app.producer
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            where.topic, b"k", b"faust-over-sasl", where.partition, None, None
        )
    finally:
        await producer.stop()
    assert sent.offset > where.offset


async def test_a_wrong_password_is_refused(sasl_broker: LocalBroker) -> None:
    wrong = _sasl(sasl_broker, "SCRAM-SHA-256", password="not-the-secret")
    assert not await asyncio.to_thread(metadata_ok, wrong, 10)
    with pytest.raises(BackboneError):
        await apply_catalogue(wrong, Catalogue(prefix=unique("sasl") + "."))


async def test_the_plaintext_listener_still_serves_the_broker_itself(
    sasl_broker: LocalBroker,
) -> None:
    assert await asyncio.to_thread(metadata_ok, sasl_broker.bootstrap, 10)
    assert await asyncio.to_thread(metadata_ok, _sasl(sasl_broker, "PLAIN"), 10)

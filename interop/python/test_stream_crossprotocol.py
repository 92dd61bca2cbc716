"""One stream, three protocols: a stream declared over AMQP 0-9-1 (pika) read with rstream, a
stream created with rstream read by an AMQP 0-9-1 consumer (x-stream-offset), and MQTT (paho)
publishes routed by amq.topic into a stream read with rstream. The properties and headers of each
side must come out on the other as RabbitMQ 3.10 maps them (AMQP 0-9-1 <-> AMQP 1.0)."""

import os
import uuid

import pika
import pytest
from rstream import AMQPMessage, ConsumerOffsetSpecification, OffsetType, Properties, amqp_decoder, exceptions

from helpers import connect
from stream_helpers import Inbox, client, consumer, producer, require_stream_url, run, unique

require_stream_url()


@pytest.fixture
def amqp_stream(connections):
    """A stream declared over AMQP 0-9-1, deleted over AMQP at the end."""
    conn = connections()
    ch = conn.channel()
    queue = unique("amqp")
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "stream"})
    yield conn, queue
    cleanup = connect()
    try:
        cleanup.channel().queue_delete(queue)
    finally:
        cleanup.close()


def read_stream(stream, count):
    async def go():
        inbox = Inbox()
        async with consumer() as c:
            await c.subscribe(
                stream, inbox, decoder=amqp_decoder, offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST)
            )
            await inbox.wait(count)
        return inbox

    return run(go())


def as_text(value):
    return value.decode() if isinstance(value, bytes) else value


def test_amqp_declared_stream_is_read_with_rstream(amqp_stream):
    conn, queue = amqp_stream
    ch = conn.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(
        content_type="text/plain",
        content_encoding="utf-8",
        message_id="id-1",
        correlation_id="corr-1",
        reply_to="replies",
        headers={"k": "v", "n": 3, "flag": True},
        delivery_mode=2,
        timestamp=1_700_000_000,
    )
    ch.basic_publish("", queue, b"from-amqp", properties=props, mandatory=True)
    ch.basic_publish("", queue, b"second", mandatory=True)

    inbox = read_stream(queue, 2)
    assert inbox.bodies == ["from-amqp", "second"]
    assert inbox.offsets == [0, 1]
    message = inbox.items[0][2]
    p = message.properties
    assert as_text(p.message_id) == "id-1"
    assert as_text(p.correlation_id) == "corr-1"
    assert as_text(p.content_type) == "text/plain"
    assert as_text(p.content_encoding) == "utf-8"
    assert as_text(p.reply_to) == "replies"
    # AMQP 0-9-1 timestamps are seconds, AMQP 1.0 creation-time milliseconds.
    assert p.creation_time == 1_700_000_000_000
    app = {as_text(k): as_text(v) for k, v in message.application_properties.items()}
    assert app["k"] == "v" and app["n"] == 3 and app["flag"] is True
    # RabbitMQ records where the message was published in message annotations.
    ann = {as_text(k): as_text(v) for k, v in message.message_annotations.items()}
    assert ann.get("x-exchange") == ""
    assert ann.get("x-routing-key") == queue


def test_rstream_messages_reach_an_amqp_consumer_with_their_properties(amqp_stream):
    conn, queue = amqp_stream

    async def publish():
        async with producer() as p:
            await p.send_wait(
                queue,
                AMQPMessage(
                    body=b"from-stream",
                    properties=Properties(
                        message_id="sid-1",
                        correlation_id="scorr",
                        content_type="application/json",
                        reply_to="back",
                    ),
                    application_properties={"k": "v", "n": 3},
                ),
            )
            await p.send_wait(queue, AMQPMessage(body=b"plain"))

    run(publish())
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    got = []
    for method, props, body in ch.consume(queue, arguments={"x-stream-offset": "first"}, inactivity_timeout=10):
        if method is None:
            break
        got.append((body, props))
        ch.basic_ack(method.delivery_tag)
        if len(got) == 2:
            break
    ch.cancel()
    assert [b for b, _ in got] == [b"from-stream", b"plain"]
    props = got[0][1]
    assert props.message_id == "sid-1"
    assert props.correlation_id == "scorr"
    assert props.content_type == "application/json"
    assert props.reply_to == "back"
    assert props.headers["k"] == "v"
    assert props.headers["n"] == 3
    assert props.headers["x-stream-offset"] == 0
    assert got[1][1].headers["x-stream-offset"] == 1


def test_a_stream_created_with_rstream_is_an_amqp_queue():
    name = unique("created")

    async def create():
        c = await client()
        try:
            await c.create_stream(name)
        finally:
            await c.close()

    run(create())
    conn = connect()
    try:
        ch = conn.channel()
        # Passive declare finds it; declaring it again as a stream is equivalent.
        ok = ch.queue_declare(name, passive=True)
        assert ok.method.message_count == 0
        ch.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
        # Declaring it as a classic queue is not: 406 PRECONDITION_FAILED.
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
            ch.queue_declare(name, durable=True)
        assert err.value.reply_code == 406
        ch = conn.channel()
        ch.queue_delete(name)
    finally:
        conn.close()

    async def gone():
        c = await client()
        try:
            assert not await c.stream_exists(name)
            with pytest.raises(exceptions.StreamDoesNotExist):
                await c.delete_stream(name)
        finally:
            await c.close()

    run(gone())


@pytest.mark.skipif(not os.environ.get("MQTT_URL"), reason="MQTT_URL not set")
def test_mqtt_publishes_land_in_a_stream_bound_to_amq_topic(amqp_stream):
    from mqtt_helpers import V311, Client

    conn, queue = amqp_stream
    run_id = uuid.uuid4().hex[:10]
    conn.channel().queue_bind(queue, "amq.topic", f"sensor.{run_id}.*")
    pub = Client(V311)
    pub.connect()
    try:
        for i in range(3):
            pub.publish(f"sensor/{run_id}/t{i}", f"reading {i}", qos=1)
        pub.publish(f"other/{run_id}/t", "not bound", qos=1)
    finally:
        pub.disconnect()
    inbox = read_stream(queue, 3)
    assert inbox.bodies == ["reading 0", "reading 1", "reading 2"]
    ann = {as_text(k): as_text(v) for k, v in (inbox.items[0][2].message_annotations or {}).items()}
    assert ann.get("x-exchange") == "amq.topic"
    assert ann.get("x-routing-key") == f"sensor.{run_id}.t0"

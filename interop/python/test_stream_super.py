"""Super streams (partitioned streams) and single active consumer through rstream: Partitions and
Route on a super stream laid out as RabbitMQ lays it out (a direct exchange, partition streams
bound with their keys and x-stream-partition-order), publishing through the exchange over AMQP
0-9-1 and through rstream's SuperStreamProducer, consuming with SuperStreamConsumer;
CreateSuperStream and DeleteSuperStream (RabbitMQ 3.13+); single active consumer hand-over
(RabbitMQ 3.11+)."""

import pytest
from rstream import (
    AMQPMessage,
    ConsumerOffsetSpecification,
    OffsetType,
    RouteType,
    SuperStreamConsumer,
    SuperStreamProducer,
    amqp_decoder,
    exceptions,
    schema,
)

from helpers import connect
from stream_helpers import (
    HOST,
    PASSWORD,
    PORT,
    USERNAME,
    VHOST,
    Inbox,
    client,
    consumer,
    producer,
    quiet,
    require_stream_url,
    run,
    skip_on_old_rabbitmq,
    tolerate_rabbitmq_310_route_key,
    unique,
    wait_for,
)

require_stream_url()

PARTITIONS = 3


@pytest.fixture(scope="module", autouse=True)
def _route_key_compat():
    tolerate_rabbitmq_310_route_key()


@pytest.fixture
def super_stream():
    """A super stream declared over AMQP 0-9-1 as `rabbitmq-streams add_super_stream` lays it out:
    a durable direct exchange, partitions NAME-0..NAME-2 bound with keys "0".."2" in order."""
    name = unique("super")
    conn = connect()
    ch = conn.channel()
    ch.exchange_declare(name, "direct", durable=True, arguments={"x-super-stream": True})
    # Bound in reverse: the order comes from x-stream-partition-order, not from binding order.
    for i in reversed(range(PARTITIONS)):
        ch.queue_declare(f"{name}-{i}", durable=True, arguments={"x-queue-type": "stream"})
        ch.queue_bind(f"{name}-{i}", name, str(i), arguments={"x-stream-partition-order": i})
    yield name, conn
    cleanup = connect()
    try:
        cch = cleanup.channel()
        for i in range(PARTITIONS):
            cch.queue_delete(f"{name}-{i}")
        cch.exchange_delete(name)
    finally:
        cleanup.close()


async def answer(c, frame, response):
    """Sends a request and returns the whole response, whatever its response code."""
    return await c.sync_request(frame, resp_schema=response, raise_exception=False)


async def read_partition(stream, count):
    inbox = Inbox()
    async with consumer() as c:
        await c.subscribe(stream, inbox, decoder=amqp_decoder)
        await inbox.wait(count)
    return inbox


def test_partitions_are_listed_in_partition_order(super_stream):
    name, _ = super_stream

    async def scenario():
        c = await client()
        try:
            assert await c.partitions(name) == [f"{name}-{i}" for i in range(PARTITIONS)]
            missing = await answer(
                c, schema.SuperStreamPartitions(c._corr_id_seq.next(), super_stream=unique("none")), schema.SuperStreamPartitionsResponse
            )
            assert missing.response_code == exceptions.StreamDoesNotExist.code
            assert missing.streams == []
        finally:
            await c.close()

    run(scenario())


def test_route_finds_the_partition_of_a_key(super_stream):
    name, _ = super_stream

    async def scenario():
        c = await client()
        try:
            for i in range(PARTITIONS):
                assert await c.route(str(i), name) == [f"{name}-{i}"]
            # A key no binding has: OK (1) and no stream, as RabbitMQ answers.
            none = await answer(
                c, schema.SuperStreamRoute(c._corr_id_seq.next(), routing_key="nope", super_stream=name), schema.SuperStreamRouteResponse
            )
            assert (none.response_code, none.streams) == (1, [])
            missing = await answer(
                c, schema.SuperStreamRoute(c._corr_id_seq.next(), routing_key="0", super_stream=unique("none")), schema.SuperStreamRouteResponse
            )
            assert missing.response_code == exceptions.StreamDoesNotExist.code
        finally:
            await c.close()

    run(scenario())


def test_amqp_publishes_to_the_exchange_land_in_their_partition(super_stream):
    name, conn = super_stream
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(PARTITIONS):
        ch.basic_publish(name, str(i), f"to-{i}".encode(), mandatory=True)
        ch.basic_publish(name, str(i), f"again-{i}".encode(), mandatory=True)

    async def scenario():
        for i in range(PARTITIONS):
            inbox = await read_partition(f"{name}-{i}", 2)
            assert inbox.bodies == [f"to-{i}", f"again-{i}"]

    run(scenario())


def test_a_key_routing_producer_publishes_into_the_partition_of_its_key(super_stream):
    name, _ = super_stream

    async def key_of(message):
        return message.application_properties["key"]

    async def scenario():
        # One producer per key: rstream 1.1.1 caches the first Route answer for every key.
        for key in ("2", "0"):
            confirmed = []
            async with SuperStreamProducer(
                HOST, PORT, username=USERNAME, password=PASSWORD, vhost=VHOST,
                super_stream=name, routing=RouteType.Key, routing_extractor=key_of,
            ) as p:
                for n in range(3):
                    await p.send(
                        AMQPMessage(body=f"k{key}-{n}".encode(), application_properties={"key": key}),
                        on_publish_confirm=lambda status: confirmed.append(status),
                    )
                await wait_for(lambda: len(confirmed) >= 3, f"the confirms for key {key}")
                assert all(s.is_confirmed for s in confirmed)
        assert (await read_partition(f"{name}-2", 3)).bodies == ["k2-0", "k2-1", "k2-2"]
        assert (await read_partition(f"{name}-0", 3)).bodies == ["k0-0", "k0-1", "k0-2"]
        inbox = Inbox()
        async with consumer() as c:
            await c.subscribe(f"{name}-1", inbox, decoder=amqp_decoder)
            await quiet()
        assert inbox.bodies == []  # no key routed there

    run(scenario())


def test_hash_routing_and_a_super_stream_consumer(super_stream):
    name, _ = super_stream
    customers = [f"customer-{i}" for i in range(12)]

    async def key_of(message):
        return message.application_properties["customer"]

    async def scenario():
        confirmed = []
        async with SuperStreamProducer(
            HOST, PORT, username=USERNAME, password=PASSWORD, vhost=VHOST,
            super_stream=name, routing=RouteType.Hash, routing_extractor=key_of,
        ) as p:
            for n, customer in enumerate(customers * 2):
                await p.send(
                    AMQPMessage(body=f"{customer}:{n}".encode(), application_properties={"customer": customer}),
                    on_publish_confirm=lambda status: confirmed.append(status),
                )
            await wait_for(lambda: len(confirmed) >= 2 * len(customers), "every confirm")
        got = []

        async def keep(message, context):
            got.append((context.stream, bytes(message.body).decode()))

        async with SuperStreamConsumer(
            HOST, PORT, username=USERNAME, password=PASSWORD, vhost=VHOST, super_stream=name
        ) as ssc:
            await ssc.subscribe(keep, decoder=amqp_decoder)
            await wait_for(lambda: len(got) >= 2 * len(customers), "every message from the partitions")
        assert sorted(b for _, b in got) == sorted(f"{c}:{n}" for n, c in enumerate(customers * 2))
        # Each customer's messages are all in one partition, in order.
        where = {}
        for stream, body in got:
            customer = body.split(":")[0]
            assert where.setdefault(customer, stream) == stream, (customer, where[customer], stream)
        assert len(set(where.values())) > 1  # 12 keys over 3 partitions

    run(scenario())


def test_create_and_delete_a_super_stream_with_the_protocol():
    skip_on_old_rabbitmq((3, 13), "CreateSuperStream and DeleteSuperStream are RabbitMQ 3.13+")
    name = unique("created")

    async def scenario():
        c = await client()
        try:
            await c.create_super_stream(name, [f"{name}-a", f"{name}-b"], ["a", "b"])
            with pytest.raises(exceptions.StreamAlreadyExists):
                await c.create_super_stream(name, [f"{name}-a", f"{name}-b"], ["a", "b"])
            assert await c.partitions(name) == [f"{name}-a", f"{name}-b"]
            assert await c.route("b", name) == [f"{name}-b"]
            assert await c.stream_exists(f"{name}-a")
        finally:
            await c.close()
        # The same topology over AMQP 0-9-1: the exchange and the partition streams.
        conn = connect()
        try:
            ch = conn.channel()
            ch.exchange_declare(name, "direct", passive=True)
            ch.queue_declare(f"{name}-b", passive=True)
        finally:
            conn.close()
        c = await client()
        try:
            await c.delete_super_stream(name)
            assert not await c.stream_exists(f"{name}-a")
            with pytest.raises(exceptions.StreamDoesNotExist):
                await c.delete_super_stream(name)
        finally:
            await c.close()

    run(scenario())


def test_single_active_consumer_hands_over():
    skip_on_old_rabbitmq((3, 11), "single active consumer (ConsumerUpdate) is RabbitMQ 3.11+")
    stream = unique("sac")

    async def scenario():
        c = await client()
        await c.create_stream(stream)
        await c.close()
        try:
            events = []

            # Numeric offsets, not NEXT: the answer reaches the broker after the listener
            # returns, so NEXT would race with the publish that follows the hand-over (and
            # test_consumer_update_answered_with_next checks NEXT on its own).
            def listener(tag, start):
                async def on_update(is_active, context):
                    events.append((tag, is_active))
                    return schema.OffsetSpecification(OffsetType.OFFSET, start)

                return on_update

            first, second = Inbox(), Inbox()
            props = {"single-active-consumer": "true", "name": "group"}
            c1, c2 = consumer(), consumer()
            await c1.start()
            await c2.start()
            await c1.subscribe(stream, first, decoder=amqp_decoder, properties=dict(props), subscriber_name="group",
                               consumer_update_listener=listener("one", 0),
                               offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST))
            await wait_for(lambda: ("one", True) in events, "the first consumer to be made active")
            await c2.subscribe(stream, second, decoder=amqp_decoder, properties=dict(props), subscriber_name="group",
                               consumer_update_listener=listener("two", 3),
                               offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST))
            async with producer() as p:
                for i in range(3):
                    await p.send_wait(stream, AMQPMessage(body=f"a{i}".encode()))
            await first.wait(3)
            await quiet()
            assert second.bodies == []
            await c1.close()
            await wait_for(lambda: ("two", True) in events, "the second consumer to take over")
            async with producer() as p:
                await p.send_wait(stream, AMQPMessage(body=b"b0"))
            await second.wait(1)
            assert second.bodies == ["b0"]
            await c2.close()
        finally:
            c = await client()
            await c.delete_stream(stream)
            await c.close()

    run(scenario())


def test_single_active_consumer_on_super_stream_partitions(super_stream):
    """Two members of a group on a super stream: each partition has one active consumer; when a
    member leaves, the other takes its partitions over (ConsumerUpdate, active = 1)."""
    skip_on_old_rabbitmq((3, 11), "single active consumer (ConsumerUpdate) is RabbitMQ 3.11+")
    name, conn = super_stream

    async def scenario():
        active = {}  # (member, partition) -> latest is_active
        got = {"a": [], "b": []}

        handed_over = []

        def member(tag):
            async def on_update(is_active, context):
                active[(tag, context.stream)] = is_active
                # Each partition gets one "first-" message before the hand-over, one "second-"
                # after: numeric offsets keep NEXT's race with the publishes out.
                return schema.OffsetSpecification(OffsetType.OFFSET, 1 if handed_over else 0)

            async def on_message(message, context):
                got[tag].append((context.stream, bytes(message.body).decode()))

            return on_update, on_message

        props = {"single-active-consumer": "true", "name": "group", "super-stream": name}
        consumers = {}
        for tag in ("a", "b"):
            on_update, on_message = member(tag)
            ssc = SuperStreamConsumer(HOST, PORT, username=USERNAME, password=PASSWORD, vhost=VHOST, super_stream=name)
            await ssc.start()
            await ssc.subscribe(
                on_message,
                decoder=amqp_decoder,
                properties=dict(props),
                subscriber_name="group",
                consumer_update_listener=on_update,
            )
            consumers[tag] = ssc

        partitions = [f"{name}-{i}" for i in range(PARTITIONS)]

        def owners():
            return {p: [t for t in ("a", "b") if active.get((t, p))] for p in partitions}

        # RabbitMQ's coordinator rebalances the partitions over the group's members (partition
        # i to member i mod 2, the old one deactivated first): wait for that, not just for
        # one active member per partition (true as soon as the first member joined).
        await wait_for(
            lambda: all(len(o) == 1 for o in owners().values()) and {o[0] for o in owners().values()} == {"a", "b"},
            "one active member per partition, the partitions shared out between the two",
        )

        ch = conn.channel()
        ch.confirm_delivery()
        for i in range(PARTITIONS):
            ch.basic_publish(name, str(i), f"first-{i}".encode(), mandatory=True)
        await wait_for(lambda: len(got["a"]) + len(got["b"]) >= PARTITIONS, "a message per partition")
        await quiet()
        for tag in ("a", "b"):
            assert {s for s, _ in got[tag]} == {p for p, o in owners().items() if o == [tag]}, (tag, got, owners())

        handed_over.append(True)
        await consumers["a"].close()
        await wait_for(lambda: all(active.get(("b", p)) for p in partitions), "b to take over every partition")
        for i in range(PARTITIONS):
            ch.basic_publish(name, str(i), f"second-{i}".encode(), mandatory=True)
        await wait_for(lambda: sum(b.startswith("second") for _, b in got["b"]) >= PARTITIONS, "b to get the rest")
        await consumers["b"].close()

    run(scenario())


def test_consumer_update_answered_with_next():
    """rstream answers ConsumerUpdate with its offset specification always followed by an 8-byte
    offset, also for NEXT (and FIRST, LAST), where PROTOCOL.adoc has none; RabbitMQ reads the
    type and ignores the rest (rabbit_stream_core:parse_response_body for consumer_update)."""
    skip_on_old_rabbitmq((3, 11), "single active consumer (ConsumerUpdate) is RabbitMQ 3.11+")
    stream = unique("sacnext")

    async def scenario():
        c = await client()
        await c.create_stream(stream)
        await c.close()
        inbox = Inbox()
        try:
            async with consumer() as cons:
                updates = []

                async def on_update(is_active, context):
                    updates.append(is_active)
                    return schema.OffsetSpecification(OffsetType.NEXT, 0)

                await cons.subscribe(
                    stream,
                    inbox,
                    decoder=amqp_decoder,
                    properties={"single-active-consumer": "true", "name": "g"},
                    subscriber_name="g",
                    consumer_update_listener=on_update,
                )
                # rstream sends the answer as soon as the listener returns. A request after it on
                # the same connection: once answered, the broker has read the ConsumerUpdate
                # answer too (and the connection is still open).
                await wait_for(lambda: updates == [True], "the activation")
                conn = cons._clients[stream]
                assert await conn.stream_exists(stream)
                async with producer() as p:
                    await p.send_wait(stream, AMQPMessage(body=b"after"))
                await inbox.wait(1)
                assert inbox.bodies == ["after"]
        finally:
            c = await client()
            await c.delete_stream(stream)
            await c.close()

    run(scenario())


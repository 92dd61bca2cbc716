"""The RabbitMQ Stream protocol through rstream: the handshake and its refusals, Create and Delete
with their errors, Metadata, publishing with confirms, Subscribe from each offset specification,
credit counted in chunks, server-side offset tracking across a reconnect, and de-duplication by
publisher name across a producer restart. Checked against RabbitMQ 3.10."""

import datetime

import pytest
from rstream import (
    AMQPMessage,
    ConsumerOffsetSpecification,
    FilterConfiguration,
    OffsetType,
    RawMessage,
    amqp_decoder,
    exceptions,
    schema,
)

from stream_helpers import (
    HOST,
    PORT,
    Inbox,
    client,
    consumer,
    eventually,
    producer,
    quiet,
    require_stream_url,
    run,
    skip_on_old_rabbitmq,
    unique,
    wait_for,
)

require_stream_url()


@pytest.fixture
def stream():
    """A fresh stream, deleted at the end whatever the scenario did."""
    name = unique("s")

    async def create():
        c = await client()
        try:
            await c.create_stream(name)
        finally:
            await c.close()

    run(create())
    yield name

    async def delete():
        c = await client()
        try:
            await c.delete_stream(name)
        except exceptions.StreamDoesNotExist:
            pass
        finally:
            await c.close()

    run(delete())


async def publish_chunks(stream, chunks, per_chunk=1, prefix="m"):
    """Publishes `chunks` batches of `per_chunk` messages, waiting for each batch's confirms before
    the next, so that each batch is its own chunk. Returns the bodies in order."""
    bodies = []
    async with producer() as p:
        for c in range(chunks):
            batch = [f"{prefix}{c * per_chunk + i}" for i in range(per_chunk)]
            confirmed = []
            await p.send_batch(
                stream,
                [AMQPMessage(body=b.encode()) for b in batch],
                on_publish_confirm=lambda status: confirmed.append(status),
            )
            await wait_for(lambda: len(confirmed) >= len(batch), f"confirms of chunk {c}")
            assert all(s.is_confirmed for s in confirmed), confirmed
            bodies.extend(batch)
    return bodies


async def read(stream, spec, want, *, credit=10):
    """Subscribes with `spec` until `want` messages have arrived; returns the Inbox."""
    inbox = Inbox()
    async with consumer() as c:
        await c.subscribe(stream, inbox, decoder=amqp_decoder, offset_specification=spec, initial_credit=credit)
        await inbox.wait(want)
    return inbox


# --- the handshake ---------------------------------------------------------------------------


def test_guest_connects_and_the_server_says_who_it_is():
    async def scenario():
        c = await client()
        try:
            props = c.server_properties
            # PeerProperties (product, version) and the Open response (advertised host and port,
            # which clients connect to for a stream's leader).
            assert props.get("product"), props
            assert props.get("version"), props
            assert props.get("advertised_host"), props
            assert int(props["advertised_port"]) > 0, props
        finally:
            await c.close()

    run(scenario())


def test_a_wrong_password_is_refused():
    async def scenario():
        with pytest.raises(exceptions.AuthenticationFailure):
            await client(password="not-the-password")
        with pytest.raises(exceptions.AuthenticationFailure):
            await client(username="no-such-user-" + unique("u"), password="x")

    run(scenario())


def test_an_unknown_vhost_is_refused():
    async def scenario():
        with pytest.raises(exceptions.VirtualHostAccessFailure):
            await client(vhost="no-such-vhost-" + unique("v"))

    run(scenario())


# --- Create, Delete, Metadata -----------------------------------------------------------------


def test_create_and_delete_with_their_errors():
    name = unique("cd")

    async def scenario():
        c = await client()
        try:
            args = {"max-length-bytes": 10_000_000, "max-age": "1h"}
            await c.create_stream(name, arguments=args)
            assert await c.stream_exists(name)
            # The same stream again: STREAM_ALREADY_EXISTS (5).
            with pytest.raises(exceptions.StreamAlreadyExists):
                await c.create_stream(name, arguments=args)
            # The same name with other arguments: PRECONDITION_FAILED (17), as RabbitMQ's
            # equivalence check of a queue's arguments.
            with pytest.raises(exceptions.PreconditionFailed):
                await c.create_stream(name)
            await c.delete_stream(name)
            assert not await c.stream_exists(name)
            with pytest.raises(exceptions.StreamDoesNotExist):
                await c.delete_stream(name)
        finally:
            await c.close()

    run(scenario())


def test_metadata_names_the_advertised_leader(stream):
    async def scenario():
        c = await client()
        try:
            leader, replicas = await c.query_leader_and_replicas(stream)
            assert leader.host == c.server_properties["advertised_host"]
            assert leader.port == int(c.server_properties["advertised_port"])
            assert replicas == []  # a single node
            # A stream that does not exist: STREAM_DOES_NOT_EXIST in the stream's metadata entry.
            with pytest.raises(exceptions.StreamDoesNotExist):
                await c.query_leader_and_replicas(unique("missing"))
        finally:
            await c.close()

    run(scenario())


def test_publishing_to_a_missing_stream_is_refused():
    async def scenario():
        async with producer() as p:
            with pytest.raises(exceptions.StreamDoesNotExist):
                await p.send_wait(unique("missing"), b"x")

    run(scenario())


def test_subscribing_to_a_missing_stream_is_refused():
    async def scenario():
        c = await client()
        try:
            with pytest.raises(exceptions.StreamDoesNotExist):
                await c.subscribe(unique("missing"), subscription_id=1)
        finally:
            await c.close()

    run(scenario())


# --- publish and subscribe --------------------------------------------------------------------


def test_publish_with_confirms_then_read_from_first(stream):
    async def scenario():
        sent = await publish_chunks(stream, 5, per_chunk=3)
        inbox = await read(stream, ConsumerOffsetSpecification(OffsetType.FIRST), len(sent))
        assert inbox.bodies == sent
        assert inbox.offsets == list(range(len(sent)))

    run(scenario())


def test_a_numeric_offset_starts_there(stream):
    async def scenario():
        sent = await publish_chunks(stream, 4, per_chunk=3)
        # Offset 4 is inside the second chunk: the client drops what precedes it in the chunk.
        inbox = await read(stream, ConsumerOffsetSpecification(OffsetType.OFFSET, 4), len(sent) - 4)
        assert inbox.bodies == sent[4:]
        assert inbox.offsets == list(range(4, len(sent)))

    run(scenario())


def test_an_offset_past_the_end_waits_for_it(stream):
    async def scenario():
        await publish_chunks(stream, 2)
        c = await client()
        chunks = []
        try:

            def on_deliver(frame):
                chunks.append((frame.chunk_first_offset, frame.num_entries))

            c.add_handler(schema.Deliver, on_deliver, name="1")
            await c.run_queue_listener_task(subscriber_id=1, handler=on_deliver)
            # A bare subscription (rstream's Consumer would drop messages below the offset asked
            # for itself): the broker clamps the offset to the end of the log.
            await c.subscribe(stream, subscription_id=1, offset_spec=schema.OffsetSpec.from_params(OffsetType.OFFSET, 1000))
            await quiet()
            assert chunks == []
            await publish_chunks(stream, 1, prefix="later")
            await wait_for(lambda: chunks, "the next chunk")
            assert chunks == [(2, 1)]
        finally:
            await c.close()

    run(scenario())


def test_last_starts_at_the_last_chunk(stream):
    async def scenario():
        sent = await publish_chunks(stream, 4, per_chunk=2)
        inbox = await read(stream, ConsumerOffsetSpecification(OffsetType.LAST), 2)
        assert inbox.bodies == sent[-2:]
        assert inbox.offsets == [6, 7]

    run(scenario())


def test_next_waits_for_new_messages(stream):
    async def scenario():
        await publish_chunks(stream, 3)
        inbox = Inbox()
        async with consumer() as c:
            await c.subscribe(stream, inbox, decoder=amqp_decoder, offset_specification=ConsumerOffsetSpecification(OffsetType.NEXT))
            await quiet()
            assert inbox.bodies == []
            await publish_chunks(stream, 1, prefix="new")
            await inbox.wait(1)
            assert inbox.bodies == ["new0"]
            assert inbox.offsets == [3]

    run(scenario())


def test_a_timestamp_reaches_back_in_time(stream):
    async def scenario():
        sent = await publish_chunks(stream, 3)
        an_hour_ago = int((datetime.datetime.now().timestamp() - 3600) * 1000)
        inbox = await read(stream, ConsumerOffsetSpecification(OffsetType.TIMESTAMP, an_hour_ago), len(sent))
        assert inbox.bodies == sent
        # A timestamp after the last chunk: the consumer starts at the end of the log.
        in_an_hour = int((datetime.datetime.now().timestamp() + 3600) * 1000)
        later = Inbox()
        async with consumer() as c:
            await c.subscribe(
                stream, later, decoder=amqp_decoder, offset_specification=ConsumerOffsetSpecification(OffsetType.TIMESTAMP, in_an_hour)
            )
            await publish_chunks(stream, 1, prefix="after")
            await later.wait(1)
            assert later.bodies == ["after0"]

    run(scenario())


def test_messages_stay_after_being_read(stream):
    async def scenario():
        sent = await publish_chunks(stream, 2, per_chunk=2)
        first = await read(stream, ConsumerOffsetSpecification(OffsetType.FIRST), len(sent))
        again = await read(stream, ConsumerOffsetSpecification(OffsetType.FIRST), len(sent))
        assert first.bodies == again.bodies == sent

    run(scenario())


def test_raw_bodies_come_back_byte_for_byte(stream):
    payloads = [b"", b"\x00\x01\xff", bytes(range(256)) * 40]

    async def scenario():
        async with producer() as p:
            for body in payloads:
                await p.send_wait(stream, RawMessage(body))
        got = []

        async def keep(message, context):
            got.append(bytes(message))

        async with consumer() as c:
            await c.subscribe(stream, keep)
            await wait_for(lambda: len(got) == len(payloads), "the raw messages")
        assert got == payloads

    run(scenario())


# --- credit --------------------------------------------------------------------------------------


def test_credit_is_counted_in_chunks(stream):
    """A bare subscription with credit 1 gets exactly one chunk; each Credit(1) lets one more in."""

    async def scenario():
        await publish_chunks(stream, 3, per_chunk=4)
        c = await client()
        chunks = []
        try:

            def on_deliver(frame):
                chunks.append((frame.chunk_first_offset, frame.num_entries))

            c.add_handler(schema.Deliver, on_deliver, name="7")
            await c.run_queue_listener_task(subscriber_id=7, handler=on_deliver)
            await c.subscribe(stream, subscription_id=7, initial_credit=1)
            await wait_for(lambda: len(chunks) >= 1, "the first chunk")
            await quiet()
            assert chunks == [(0, 4)]
            await c.credit(7, 1)
            await wait_for(lambda: len(chunks) >= 2, "the second chunk")
            await quiet()
            assert chunks == [(0, 4), (4, 4)]
            await c.credit(7, 5)
            await wait_for(lambda: len(chunks) >= 3, "the third chunk")
            assert chunks == [(0, 4), (4, 4), (8, 4)]
            await c.unsubscribe(7)
            # The subscription is gone: unsubscribing again is SUBSCRIPTION_ID_DOES_NOT_EXIST.
            with pytest.raises(exceptions.SubscriptionIDDoesNotExist):
                await c.unsubscribe(7)
        finally:
            await c.close()

    run(scenario())


def test_a_subscription_id_in_use_is_refused(stream):
    async def scenario():
        c = await client()
        try:
            await c.subscribe(stream, subscription_id=3, initial_credit=0)
            with pytest.raises(exceptions.SubscriptionIDAlreadyExists):
                await c.subscribe(stream, subscription_id=3, initial_credit=0)
        finally:
            await c.close()

    run(scenario())


def test_many_chunks_flow_with_one_credit_at_a_time(stream):
    async def scenario():
        chunks, per_chunk = 60, 10
        async with producer() as p:
            confirmed = []
            for c in range(chunks):
                await p.send_batch(
                    stream,
                    [AMQPMessage(body=f"m{c * per_chunk + i}".encode()) for i in range(per_chunk)],
                    on_publish_confirm=lambda status: confirmed.append(status),
                )
            await wait_for(lambda: len(confirmed) >= chunks * per_chunk, "every confirm")
            assert all(s.is_confirmed for s in confirmed)
        # rstream gives one credit back per chunk received: the whole log flows through credit 1.
        inbox = await read(stream, ConsumerOffsetSpecification(OffsetType.FIRST), chunks * per_chunk, credit=1)
        assert inbox.bodies == [f"m{i}" for i in range(chunks * per_chunk)]
        assert inbox.offsets == list(range(chunks * per_chunk))

    run(scenario())


# --- offset tracking -----------------------------------------------------------------------------


def test_stored_offsets_survive_a_reconnect(stream):
    async def scenario():
        sent = await publish_chunks(stream, 10)
        inbox = Inbox()
        async with consumer() as c:
            with pytest.raises(exceptions.OffsetNotFound):
                await c.query_offset(stream, "app")
            await c.subscribe(stream, inbox, decoder=amqp_decoder, subscriber_name="app")
            await inbox.wait(6)
            await c.store_offset(stream, "app", inbox.offsets[5])
            # StoreOffset has no response: wait until a query sees it.
            await eventually(lambda: c.query_offset(stream, "app"), 5, "the stored offset")
        # A new connection, as after a restart of the application.
        async with consumer() as c:
            assert await c.query_offset(stream, "app") == 5
            resumed = Inbox()
            await c.subscribe(
                stream,
                resumed,
                decoder=amqp_decoder,
                subscriber_name="app",
                offset_specification=ConsumerOffsetSpecification(OffsetType.OFFSET, 6),
            )
            await resumed.wait(len(sent) - 6)
            assert resumed.bodies == sent[6:]
            # Storing again moves it; a second reference is independent.
            await c.store_offset(stream, "app", 9)
            await c.store_offset(stream, "other", 2)
            await eventually(lambda: c.query_offset(stream, "app"), 9, "the moved offset")
            assert await c.query_offset(stream, "other") == 2

    run(scenario())


def test_tracking_is_not_a_message(stream):
    """A stored offset is kept in the stream but never delivered to consumers."""

    async def scenario():
        await publish_chunks(stream, 2)
        c = await client()
        try:
            await c.store_offset(stream, "ref", 1)
            await eventually(lambda: c.query_offset(stream, "ref"), 1, "the stored offset")
        finally:
            await c.close()
        await publish_chunks(stream, 1, prefix="after")
        inbox = await read(stream, ConsumerOffsetSpecification(OffsetType.FIRST), 3)
        await quiet()
        assert inbox.bodies == ["m0", "m1", "after0"]

    run(scenario())


# --- de-duplication --------------------------------------------------------------------------------


def test_a_named_producer_is_deduplicated_across_a_restart(stream):
    async def scenario():
        c = await client()
        try:
            # Nothing published under this name yet: sequence 0.
            assert await c.query_publisher_sequence(stream, "orders") == 0
        finally:
            await c.close()
        async with producer() as p:
            for i in range(5):
                await p.send_wait(stream, AMQPMessage(body=f"o{i}".encode()), publisher_name="orders")
        c = await client()
        try:
            # rstream numbers a named producer's messages from 1.
            assert await c.query_publisher_sequence(stream, "orders") == 5
        finally:
            await c.close()
        async with producer() as p:
            confirmed = []
            # A restarted producer re-sends 4 and 5 (already stored) and then 6 and 7.
            await p.send_batch(
                stream,
                [RawMessage(bytes(AMQPMessage(body=f"o{i - 1}".encode())), publishing_id=i) for i in (4, 5, 6, 7)],
                publisher_name="orders",
                on_publish_confirm=lambda status: confirmed.append(status),
            )
            # Duplicates are confirmed too (RabbitMQ confirms them without storing them).
            await wait_for(lambda: len(confirmed) >= 4, "four confirms")
            assert sorted(s.message_id for s in confirmed) == [4, 5, 6, 7]
            assert all(s.is_confirmed for s in confirmed)
        c = await client()
        try:
            assert await c.query_publisher_sequence(stream, "orders") == 7
            # Another name has its own sequence.
            assert await c.query_publisher_sequence(stream, "invoices") == 0
        finally:
            await c.close()
        inbox = await read(stream, ConsumerOffsetSpecification(OffsetType.FIRST), 7)
        await quiet()
        assert inbox.bodies == [f"o{i}" for i in range(7)]

    run(scenario())


def test_deleting_an_unknown_publisher_is_refused():
    async def scenario():
        c = await client()
        try:
            with pytest.raises(exceptions.PublisherDoesNotExist):
                await c.delete_publisher(42)
        finally:
            await c.close()

    run(scenario())


def test_the_host_and_port_are_the_advertised_ones():
    """The producer and consumer connect to the leader the metadata names: the advertised host
    and port must reach this same listener."""

    async def scenario():
        c = await client()
        try:
            props = c.server_properties
        finally:
            await c.close()
        assert int(props["advertised_port"]) == PORT, (props, PORT)
        assert props["advertised_host"] in (HOST, "localhost", "127.0.0.1"), props

    run(scenario())


# --- filtering (publish v2 with filter values, subscription filter properties) ------------------


def test_a_filtered_subscription_skips_chunks_without_its_value(stream):
    skip_on_old_rabbitmq((3, 13), "stream filtering (Publish v2, filter.N subscription properties) is RabbitMQ 3.13+")

    async def color_of(message):
        return message.application_properties["color"]

    async def scenario():
        async with producer(filter_value_extractor=color_of) as p:
            for color in ("blue", "red", "blue"):
                confirmed = []
                await p.send_batch(
                    stream,
                    [AMQPMessage(body=f"{color}{i}".encode(), application_properties={"color": color}) for i in range(5)],
                    on_publish_confirm=lambda status: confirmed.append(status),
                )
                await wait_for(lambda: len(confirmed) >= 5, f"the {color} chunk's confirms")
        c = await client()
        chunks = []
        try:

            def on_deliver(frame):
                chunks.append((frame.chunk_first_offset, frame.num_entries))

            c.add_handler(schema.Deliver, on_deliver, name="2")
            await c.run_queue_listener_task(subscriber_id=2, handler=on_deliver)
            await c.subscribe(stream, subscription_id=2, properties={"filter.0": "red", "match-unfiltered": "false"})
            await wait_for(lambda: chunks, "the red chunk")
            await quiet()
            # The broker checks each chunk's filter (a Bloom filter of its values): the blue
            # chunks are not sent at all.
            assert chunks == [(5, 5)]
        finally:
            await c.close()
        inbox = Inbox()
        async with consumer() as cons:
            await cons.subscribe(
                stream,
                inbox,
                decoder=amqp_decoder,
                filter_input=FilterConfiguration(
                    ["red"], predicate=lambda m: m.application_properties[b"color"] == b"red"
                ),
            )
            await inbox.wait(5)
            await quiet()
        assert inbox.bodies == [f"red{i}" for i in range(5)]

    run(scenario())

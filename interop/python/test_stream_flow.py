"""The RabbitMQ Stream protocol's flow through rstream: credit counted in chunks, server-side offset
tracking across a reconnect, de-duplication by publisher name across a producer restart,
sub-entry batches (plain and gzip), chunk timestamps, and filtering (RabbitMQ 3.13+). Checked
against RabbitMQ 3.10."""

import datetime

import pytest
from rstream import (
    AMQPMessage,
    CompressionType,
    ConsumerOffsetSpecification,
    FilterConfiguration,
    OffsetType,
    RawMessage,
    amqp_decoder,
    exceptions,
    schema,
)

from stream_helpers import (  # noqa: F401 - `stream` is a fixture
    Inbox,
    client,
    consumer,
    eventually,
    producer,
    publish_chunks,
    quiet,
    read,
    require_stream_url,
    run,
    skip_on_old_rabbitmq,
    stream,
    wait_for,
)

require_stream_url()


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


# --- sub-entry batching ----------------------------------------------------------------------------


def test_sub_entry_batches_pass_through_uncompressed_and_gzipped(stream):
    """A sub-entry batch is one entry holding several messages, compressed or not, stored as the
    publisher sent it: consumers unpack it, each message with its own offset."""

    async def scenario():
        confirmed = []
        async with producer() as p:
            for codec, prefix in ((CompressionType.No, "plain"), (CompressionType.Gzip, "gz")):
                await p.send_sub_entry(
                    stream,
                    [AMQPMessage(body=f"{prefix}{i}".encode()) for i in range(5)],
                    compression_type=codec,
                    on_publish_confirm=lambda status: confirmed.append(status),
                )
            # One confirm per sub-entry batch (its publishing id).
            await wait_for(lambda: len(confirmed) >= 2, "the confirms of both batches")
            assert all(s.is_confirmed for s in confirmed)
        inbox = await read(stream, ConsumerOffsetSpecification(OffsetType.FIRST), 10)
        assert inbox.bodies == [f"plain{i}" for i in range(5)] + [f"gz{i}" for i in range(5)]
        assert inbox.offsets == list(range(10))

    run(scenario())


def test_chunk_timestamps_are_the_brokers_clock_in_milliseconds(stream):
    async def scenario():
        before = int(datetime.datetime.now().timestamp() * 1000)
        await publish_chunks(stream, 1)
        stamps = []

        async def keep(message, context):
            stamps.append(context.timestamp)

        async with consumer() as c:
            await c.subscribe(stream, keep)
            await wait_for(lambda: stamps, "the message")
        # Milliseconds since the epoch, within a minute of this machine's clock (a unit or epoch
        # mistake is off by orders of magnitude).
        assert abs(stamps[0] - before) < 60_000, (stamps[0], before)

    run(scenario())

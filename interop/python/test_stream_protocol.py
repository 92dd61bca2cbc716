"""The RabbitMQ Stream protocol through rstream: the handshake and its refusals, Create and Delete
with their errors, Metadata, publishing with confirms, and Subscribe from each offset
specification (test_stream_flow.py has credit, offset tracking and de-duplication). Checked
against RabbitMQ 3.10."""

import datetime

import pytest
from rstream import ConsumerOffsetSpecification, OffsetType, RawMessage, amqp_decoder, exceptions, schema

from stream_helpers import (  # noqa: F401 - `stream` is a fixture
    HOST,
    PORT,
    Inbox,
    client,
    consumer,
    producer,
    publish_chunks,
    quiet,
    read,
    require_stream_url,
    run,
    skip_on_old_rabbitmq,
    stream,
    unique,
    wait_for,
)

require_stream_url()


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


def test_create_refuses_bad_arguments():
    async def scenario():
        c = await client()
        try:
            # PRECONDITION_FAILED (17), as rabbit_stream_manager's validation (validation_failed).
            for args in ({"queue-leader-locator": "nowhere"}, {"initial-cluster-size": "0"}):
                name = unique("bad")
                with pytest.raises(exceptions.PreconditionFailed):
                    await c.create_stream(name, arguments=args)
                assert not await c.stream_exists(name)
        finally:
            await c.close()

    run(scenario())


def test_create_refuses_an_unparsable_retention():
    skip_on_old_rabbitmq(
        (3, 11),
        "its stream reader crashes on a max-age it cannot parse and closes the connection (seen on 3.10.8); "
        "current RabbitMQ answers PRECONDITION_FAILED from the queue's argument check",
    )

    async def scenario():
        c = await client()
        try:
            for args in ({"max-age": "forever"}, {"max-length-bytes": "lots"}):
                name = unique("bad")
                with pytest.raises(exceptions.PreconditionFailed):
                    await c.create_stream(name, arguments=args)
                assert not await c.stream_exists(name)
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

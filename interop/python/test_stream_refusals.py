"""What the RabbitMQ Stream protocol refuses, and how, through a bare rstream client: publisher ids
and references in use, commands on missing streams, publishing with an unknown publisher id,
credit for an unknown subscription, and the MetadataUpdate that subscribers and publishers of a
deleted stream get. Each code is the one RabbitMQ 3.10 answers (PROTOCOL.adoc's response codes)."""

import asyncio

from rstream import schema

from stream_helpers import client, quiet, require_stream_url, run, stream, unique, wait_for  # noqa: F401

require_stream_url()

OK = 1
STREAM_DOES_NOT_EXIST = 2
SUBSCRIPTION_ID_DOES_NOT_EXIST = 4
STREAM_NOT_AVAILABLE = 6
PRECONDITION_FAILED = 17
PUBLISHER_DOES_NOT_EXIST = 18
NO_OFFSET = 19


async def ask(c, frame_cls, response_cls, **fields):
    """Sends a request and returns its response whatever the code."""
    return await c.sync_request(frame_cls(c._corr_id_seq.next(), **fields), resp_schema=response_cls, raise_exception=False)


def test_publisher_refusals(stream):
    async def scenario():
        c = await client()
        try:
            await c.declare_publisher(stream, "p", publisher_id=1)
            # The same publisher id again on this connection.
            again = await ask(c, schema.DeclarePublisher, schema.DeclarePublisherResponse, publisher_id=1, reference="", stream=stream)
            assert again.response_code == PRECONDITION_FAILED
            # The same reference on the same stream, another id.
            same_ref = await ask(c, schema.DeclarePublisher, schema.DeclarePublisherResponse, publisher_id=2, reference="p", stream=stream)
            assert same_ref.response_code == PRECONDITION_FAILED
            # A missing stream.
            missing = await ask(
                c, schema.DeclarePublisher, schema.DeclarePublisherResponse, publisher_id=3, reference="", stream=unique("missing")
            )
            assert missing.response_code == STREAM_DOES_NOT_EXIST
            await c.delete_publisher(1)
            gone = await ask(c, schema.DeletePublisher, schema.DeletePublisherResponse, publisher_id=1)
            assert gone.response_code == PUBLISHER_DOES_NOT_EXIST
        finally:
            await c.close()

    run(scenario())


def test_publishing_with_an_unknown_publisher_id_is_a_publish_error(stream):
    async def scenario():
        c = await client()
        errors = []
        try:
            c.add_handler(schema.PublishError, lambda frame: errors.append(frame), name="errors")
            await c.publish(
                [schema.Message(publishing_id=i, filter_value=None, data=b"x") for i in (7, 8)], publisher_id=42
            )
            await wait_for(lambda: errors, "a PublishError")
            frame = errors[0]
            assert frame.publisher_id == 42
            assert [(e.publishing_id, e.response_code) for e in frame.errors] == [
                (7, PUBLISHER_DOES_NOT_EXIST),
                (8, PUBLISHER_DOES_NOT_EXIST),
            ]
        finally:
            await c.close()

    run(scenario())


def test_queries_on_missing_streams_and_references(stream):
    async def scenario():
        c = await client()
        try:
            none = await ask(c, schema.QueryOffset, schema.QueryOffsetResponse, reference="nobody", stream=stream)
            assert none.response_code == NO_OFFSET
            missing = await ask(c, schema.QueryOffset, schema.QueryOffsetResponse, reference="x", stream=unique("missing"))
            assert missing.response_code == STREAM_DOES_NOT_EXIST
            seq = await ask(
                c, schema.QueryPublisherSequence, schema.QueryPublisherSequenceResponse, publisher_ref="nobody", stream=stream
            )
            assert (seq.response_code, seq.sequence) == (OK, 0)
            seq_missing = await ask(
                c, schema.QueryPublisherSequence, schema.QueryPublisherSequenceResponse, publisher_ref="x", stream=unique("missing")
            )
            assert seq_missing.response_code == STREAM_DOES_NOT_EXIST
        finally:
            await c.close()

    run(scenario())


def test_credit_for_an_unknown_subscription_is_answered_with_an_error():
    async def scenario():
        c = await client()
        answers = []
        try:
            # Credit has no response when it succeeds; for an unknown subscription the server
            # answers a Credit response with SUBSCRIPTION_ID_DOES_NOT_EXIST.
            c.add_handler(schema.CreditResponse, lambda frame: answers.append(frame), name="credit")
            await c.credit(9, 1)
            await wait_for(lambda: answers, "the Credit response")
            assert (answers[0].response_code, answers[0].subscription_id) == (SUBSCRIPTION_ID_DOES_NOT_EXIST, 9)
            # The connection is still usable.
            assert not await c.stream_exists(unique("missing"))
        finally:
            await c.close()

    run(scenario())


def test_deleting_a_stream_tells_its_subscribers_and_publishers(stream):
    async def scenario():
        sub = await client()
        pub = await client()
        updates = {"sub": [], "pub": []}
        try:
            sub.add_handler(schema.MetadataUpdate, lambda f: updates["sub"].append(f.metadata_info), name="u")
            pub.add_handler(schema.MetadataUpdate, lambda f: updates["pub"].append(f.metadata_info), name="u")
            await sub.subscribe(stream, subscription_id=5)
            await pub.declare_publisher(stream, "", publisher_id=6)
            admin = await client()
            try:
                await admin.delete_stream(stream)
            finally:
                await admin.close()
            await wait_for(lambda: updates["sub"] and updates["pub"], "MetadataUpdate on both connections")
            for who in ("sub", "pub"):
                info = updates[who][0]
                assert (info.code, info.stream) == (STREAM_NOT_AVAILABLE, stream), who
            # The subscription and the publisher are gone with the stream.
            gone = await ask(sub, schema.Unsubscribe, schema.UnsubscribeResponse, subscription_id=5)
            assert gone.response_code == SUBSCRIPTION_ID_DOES_NOT_EXIST
            gone = await ask(pub, schema.DeletePublisher, schema.DeletePublisherResponse, publisher_id=6)
            assert gone.response_code == PUBLISHER_DOES_NOT_EXIST
        finally:
            await sub.close()
            await pub.close()

    run(scenario())


def test_close_is_answered_and_ends_the_connection():
    async def scenario():
        c = await client()
        response = await asyncio.wait_for(
            c.sync_request(schema.Close(c._corr_id_seq.next(), code=1, reason="done"), resp_schema=schema.CloseResponse), 10
        )
        assert response.response_code == OK
        await quiet(0.2)
        await c.close()

    run(scenario())

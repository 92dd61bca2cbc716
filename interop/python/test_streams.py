"""A stream (x-queue-type: stream) through pika, as RabbitMQ's streams over AMQP 0-9-1: every
x-stream-offset specification a consumer may give, the x-stream-offset header on every
delivery, acknowledgements that only return credit, and RabbitMQ's refusals."""

import datetime

import pika
import pytest

from test_channel_errors import refusal

COUNT = 5


def declare_and_fill(conn, queue):
    ch = conn.channel()
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "stream"})
    ch.confirm_delivery()
    for i in range(COUNT):
        # A nack or a return raises in a confirming BlockingChannel.
        ch.basic_publish("", queue, f"m{i}".encode(), mandatory=True)
    return ch


def read(conn, queue, spec, want, timeout=5):
    """Consumes with `x-stream-offset` = `spec` until `want` deliveries (or `timeout` s of
    silence); returns [(body, x-stream-offset header)]."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2)  # less than COUNT: acks must return credit
    got = []
    args = {} if spec is None else {"x-stream-offset": spec}
    for method, props, body in ch.consume(queue, auto_ack=False, arguments=args, inactivity_timeout=timeout):
        if method is None:
            break
        got.append((body.decode(), props.headers["x-stream-offset"]))
        ch.basic_ack(method.delivery_tag)
        if len(got) == want:
            break
    ch.cancel()
    ch.close()
    return got


def everything():
    return [(f"m{i}", i) for i in range(COUNT)]


@pytest.fixture
def stream(connections, name):
    conn = connections()
    queue = name("stream")
    declare_and_fill(conn, queue)
    yield conn, queue
    if conn.is_open:
        conn.channel().queue_delete(queue)


def test_first_reads_from_the_start_with_offsets_in_the_headers(stream):
    conn, queue = stream
    assert read(conn, queue, "first", COUNT) == everything()


def test_a_numeric_offset_starts_there(stream):
    conn, queue = stream
    got = read(conn, queue, 3, 2)
    assert got == [("m3", 3), ("m4", 4)]


def test_last_starts_at_the_last_chunk(stream):
    conn, queue = stream
    got = read(conn, queue, "last", COUNT, timeout=2)
    # RabbitMQ starts at the last chunk; Pigeon writes a chunk per routed message.
    assert got and got[-1] == ("m4", 4)
    assert ("m0", 0) not in got


def test_next_waits_for_new_messages(stream):
    conn, queue = stream
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    got = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append(b.decode()), arguments={"x-stream-offset": "next"})
    conn.process_data_events(time_limit=0.5)
    assert got == []
    conn.channel().basic_publish("", queue, b"new")
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=10)
    while not got and datetime.datetime.now() < deadline:
        conn.process_data_events(time_limit=0.2)
    assert got == ["new"]


def test_a_timestamp_and_an_interval_reach_back_in_time(stream):
    conn, queue = stream
    an_hour_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    # pika encodes a datetime as an AMQP timestamp ('T').
    assert read(conn, queue, an_hour_ago, COUNT) == everything()
    assert read(conn, queue, "1h", COUNT) == everything()


def test_the_messages_stay_after_being_acknowledged(stream):
    conn, queue = stream
    assert read(conn, queue, "first", COUNT) == everything()
    assert read(conn, queue, "first", COUNT) == everything()


def test_what_rabbitmq_refuses_is_refused(stream, connections):
    conn, queue = stream
    # No prefetch: 406 (rabbit_stream_queue: "consumer prefetch count is not set").
    err = refusal(conn, lambda ch: ch.basic_consume(queue, lambda *a: None))
    assert err.reply_code == 406
    # Automatic acknowledgement and basic.get: 540 NOT_IMPLEMENTED, a hard error that closes
    # the connection, as RabbitMQ's rabbit_channel does for every hard error code.
    def no_ack(ch):
        ch.basic_qos(prefetch_count=10)
        ch.basic_consume(queue, lambda *a: None, auto_ack=True)

    for action in [no_ack, lambda ch: ch.basic_get(queue)]:
        other = connections()
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            action(other.channel())
        assert closed.value.reply_code == 540
    # A stream is durable, not exclusive, not auto-delete.
    err = refusal(conn, lambda ch: ch.queue_declare(queue + ".t", durable=False, arguments={"x-queue-type": "stream"}))
    assert err.reply_code == 406

"""(e) RPC: a server consumer answers to reply_to; the client matches answers by correlation_id."""

import uuid

import pika
import pytest

from helpers import connect, wait_until


class RpcServer:
    """Upper-cases each request and sends it back to reply_to with the request's correlation_id."""

    def __init__(self, conn, queue):
        self.conn = conn
        self.channel = conn.channel()
        self.channel.basic_qos(prefetch_count=1)
        self.channel.basic_consume(queue, self._on_request)
        self.reply_to_seen = []

    def _on_request(self, ch, method, properties, body):
        self.reply_to_seen.append(properties.reply_to)
        ch.basic_publish(
            "",
            properties.reply_to,
            body.upper(),
            pika.BasicProperties(correlation_id=properties.correlation_id),
        )
        ch.basic_ack(method.delivery_tag)


def run_calls(client_conn, server, client_ch, rpc_queue, reply_to, answers, n=10):
    """Sends n requests, waits for n answers, checks each one against its request."""
    pending = {}
    for i in range(n):
        correlation_id = uuid.uuid4().hex
        pending[correlation_id] = f"REQUEST {i}"
        client_ch.basic_publish(
            "",
            rpc_queue,
            f"request {i}".encode(),
            pika.BasicProperties(reply_to=reply_to, correlation_id=correlation_id),
        )
    wait_until([client_conn, server.conn], lambda: len(answers) >= n, f"{n} RPC answers")
    assert answers == pending, "answers do not match their requests by correlation_id"


def test_rpc_with_server_named_exclusive_reply_queue(connections, admin, name):
    rpc_queue = admin.queue(name("rpc"))
    server = RpcServer(connections(), rpc_queue)

    client_conn = connections()
    client_ch = client_conn.channel()
    declared = client_ch.queue_declare("", exclusive=True)
    reply_queue = declared.method.queue
    assert reply_queue, "the broker did not name the reply queue"

    answers = {}

    def on_answer(_ch, _method, properties, body):
        assert properties.correlation_id not in answers, f"two answers for {properties.correlation_id}"
        answers[properties.correlation_id] = body.decode()

    client_ch.basic_consume(reply_queue, on_answer, auto_ack=True)
    run_calls(client_conn, server, client_ch, rpc_queue, reply_queue, answers)
    assert set(server.reply_to_seen) == {reply_queue}

    # The reply queue is exclusive to the client's connection...
    other = connect()
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as locked:
            other.channel().basic_consume(reply_queue, lambda *a: None)
        assert locked.value.reply_code == 405, locked.value
    finally:
        other.close()

    # ...and goes away with it.
    client_conn.close()
    other = connect()
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
            other.channel().queue_declare(reply_queue, passive=True)
        assert gone.value.reply_code == 404, gone.value
    finally:
        other.close()


def test_rpc_with_direct_reply_to(connections, admin, name):
    rpc_queue = admin.queue(name("rpc"))
    server = RpcServer(connections(), rpc_queue)

    client_conn = connections()
    client_ch = client_conn.channel()
    answers = {}

    def on_answer(_ch, _method, properties, body):
        answers[properties.correlation_id] = body.decode()

    # Direct reply-to: consume the pseudo-queue (no-ack) before publishing with it as reply_to.
    client_ch.basic_consume("amq.rabbitmq.reply-to", on_answer, auto_ack=True)
    run_calls(client_conn, server, client_ch, rpc_queue, "amq.rabbitmq.reply-to", answers)
    for reply_to in server.reply_to_seen:
        assert reply_to.startswith("amq.rabbitmq.reply-to."), f"server saw reply_to {reply_to!r}"

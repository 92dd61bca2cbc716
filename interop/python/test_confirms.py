"""(f) Publisher confirms, and a mandatory publish to nowhere coming back as basic.return."""

import pika
import pytest

from helpers import wait_until

PERSISTENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)


def test_confirmed_publishes_are_all_queued(connections, admin, name):
    queue = admin.queue(name("confirmed"), durable=True)
    ch = connections().channel()
    ch.confirm_delivery()
    n = 50
    for i in range(n):
        # In confirm mode pika waits for the broker's ack and raises on a nack.
        ch.basic_publish("", queue, f"m{i}".encode(), PERSISTENT, mandatory=True)
    ok = ch.queue_declare(queue, passive=True)
    assert ok.method.message_count == n, f"{n} confirmed, {ok.method.message_count} queued"

    got = [ch.basic_get(queue, auto_ack=True)[2] for _ in range(n)]
    assert got == [f"m{i}".encode() for i in range(n)], "confirmed messages not queued in order"


def test_mandatory_publish_to_nowhere_is_returned_under_confirms(connections, admin, name):
    exchange = admin.exchange(name("nowhere"), "direct")
    ch = connections().channel()
    ch.confirm_delivery()

    with pytest.raises(pika.exceptions.UnroutableError) as returned:
        ch.basic_publish(exchange, "no.such.key", b"lost", mandatory=True)
    [message] = returned.value.messages
    assert message.method.reply_code == 312, message.method
    assert message.method.reply_text == "NO_ROUTE", message.method
    assert message.method.exchange == exchange
    assert message.method.routing_key == "no.such.key"
    assert message.body == b"lost"

    # Not mandatory: silently dropped, and still confirmed.
    ch.basic_publish(exchange, "no.such.key", b"dropped")
    assert ch.is_open


def test_mandatory_publish_to_nowhere_is_returned_without_confirms(connections, admin, name):
    exchange = admin.exchange(name("nowhere"), "topic")
    conn = connections()
    ch = conn.channel()
    returns = []
    ch.add_on_return_callback(lambda _ch, method, props, body: returns.append((method, props, body)))

    ch.basic_publish(exchange, "a.b", b"bounce", pika.BasicProperties(correlation_id="c-1"), mandatory=True)
    wait_until([conn], lambda: returns, "the basic.return of an unroutable mandatory message")
    method, props, body = returns[0]
    assert (method.reply_code, method.exchange, method.routing_key) == (312, exchange, "a.b")
    assert props.correlation_id == "c-1", "returned message lost its properties"
    assert body == b"bounce"


def test_publish_to_a_missing_exchange_closes_the_channel(connections, name):
    ch = connections().channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        ch.basic_publish(name("missing"), "k", b"x")
    assert closed.value.reply_code == 404, closed.value

"""Refusals that close only the channel, as RabbitMQ 3.13 / 4.x answers them through pika: an
unknown exchange type, the empty queue name on a channel that declared no queue, and an
x-queue-type the broker does not have. The connection stays usable after each."""

import pika
import pytest


def refusal(conn, action):
    """Runs `action` on a fresh channel and returns the broker's channel.close."""
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        action(ch)
    assert conn.is_open, "a channel error closed the connection"
    return closed.value


def test_unknown_exchange_type_closes_the_channel_with_406(connections, name):
    conn = connections()
    err = refusal(conn, lambda ch: ch.exchange_declare(name("x"), "no-such-type"))
    assert (err.reply_code, err.reply_text) == (
        406,
        "PRECONDITION_FAILED - unknown exchange type 'no-such-type'",
    )
    conn.channel().queue_declare("", exclusive=True)


@pytest.mark.parametrize("method", ["basic_get", "queue_purge", "queue_delete", "queue_bind"])
def test_empty_queue_name_without_a_declared_queue_closes_the_channel_with_404(connections, method):
    conn = connections()

    def action(ch):
        if method == "queue_bind":
            ch.queue_bind("", "amq.direct", routing_key="k")
        else:
            getattr(ch, method)("")

    err = refusal(conn, action)
    assert (err.reply_code, err.reply_text) == (404, "NOT_FOUND - no previously declared queue")
    conn.channel().queue_declare("", exclusive=True)


def test_empty_queue_name_means_the_last_declared_queue(connections):
    ch = connections().channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind("", "amq.direct")  # the routing key defaults to the queue's name
    ch.basic_publish("amq.direct", queue, b"via the shortcut")
    assert ch.basic_get("", auto_ack=True)[2] == b"via the shortcut"


def test_unknown_queue_type_closes_the_channel_with_406(connections, name):
    conn = connections()
    queue = name("typed")
    err = refusal(conn, lambda ch: ch.queue_declare(queue, arguments={"x-queue-type": "bogus"}))
    assert err.reply_code == 406
    assert err.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '{queue}' in vhost '/': "
        "\"unsupported queue type 'bogus'\""
    )
    ok = conn.channel().queue_declare(name("classic"), exclusive=True, arguments={"x-queue-type": "classic"})
    assert ok.method.message_count == 0


def test_quorum_queues_on_a_single_node(connections, name):
    # A quorum queue on a lone node: RabbitMQ accepts it, and so does Pigeon without a
    # [cluster] table (a single node is a cluster of one; its Raft log is in the data
    # directory). Confirmed publishes are there; what RabbitMQ refuses is refused.
    conn = connections()
    ch = conn.channel()
    queue = name("quorum")
    ok = ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    assert ok.method.message_count == 0
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"kept", pika.BasicProperties(delivery_mode=2))
    assert ch.queue_declare(queue, passive=True).method.message_count == 1
    ch.queue_delete(queue)
    transient = name("quorum-transient")
    err = refusal(
        conn,
        lambda c: c.queue_declare(transient, durable=False, arguments={"x-queue-type": "quorum"}),
    )
    assert err.reply_code == 406
    assert "invalid property 'non-durable'" in err.reply_text

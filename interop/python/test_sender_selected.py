"""Sender-selected distribution through pika, as RabbitMQ answers it (compared with Debian's
RabbitMQ 3.10): CC and BCC headers add routing keys, BCC never reaches a consumer, and a CC
header that is not an array closes the channel with 406. Dead-lettering lists the routing key
and the CC keys in x-death and, without a dead-letter routing key, routes with them; with one,
the CC header is removed (rabbit_dead_letter:make_msg)."""

import pika
import pytest

from helpers import Collector, wait_until
from test_channel_errors import refusal


def test_cc_and_bcc_reach_their_queues_without_bcc(connections, name):
    conn = connections()
    ch = conn.channel()
    main, cc, bcc = name("main"), name("cc"), name("bcc")
    for q in [main, cc, bcc]:
        ch.queue_declare(q, exclusive=True)
    ch.confirm_delivery()
    headers = {"CC": [cc], "BCC": [bcc], "x": 1}
    ch.basic_publish("", main, b"m", pika.BasicProperties(headers=headers), mandatory=True)
    for q in [main, cc, bcc]:
        method, props, body = ch.basic_get(q, auto_ack=True)
        assert method is not None, f"nothing in {q}"
        assert (method.routing_key, body) == (main, b"m")
        assert props.headers == {"CC": [cc], "x": 1}


def test_a_cc_header_that_is_not_an_array_is_refused(connections, name):
    conn = connections()

    def publish(ch):
        ch.basic_publish("", name("q"), b"m", pika.BasicProperties(headers={"CC": "q"}))
        ch.basic_get(name("q"))  # a round trip, to see the channel's closing

    err = refusal(conn, publish)
    assert (err.reply_code, err.reply_text) == (
        406,
        'PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"CC",longstr}',
    )


def dead_letter(connections, admin, name, src_arguments):
    """Publishes to a queue with a dead-letter exchange with a CC and a BCC key, rejects it, and
    returns the collectors of the queues bound to the dead-letter exchange with k-cc and
    dl-key, once the dead letter is in one of them."""
    dlx = admin.exchange(name("dlx"), "direct")
    cc, dl = admin.queue(name("cc")), admin.queue(name("dl"))
    admin.channel.queue_bind(cc, dlx, "k-cc")
    admin.channel.queue_bind(dl, dlx, "dl-key")
    src = admin.queue(name("src"), arguments={"x-dead-letter-exchange": dlx, **src_arguments})
    conn = connections()
    ch = conn.channel()
    ch.basic_publish("", src, b"m", pika.BasicProperties(headers={"CC": ["k-cc"], "BCC": ["k-bcc"]}))
    method = None
    while method is None:  # the publish and the get go in order on one channel
        method, _, _ = ch.basic_get(src)
    ch.basic_reject(method.delivery_tag, requeue=False)
    got = Collector(ch, cc), Collector(ch, dl)
    wait_until([conn], lambda: got[0].messages or got[1].messages, "the dead letter")
    return src, got


def test_dead_lettered_without_a_routing_key_goes_with_its_cc_keys(connections, admin, name):
    src, (cc, dl) = dead_letter(connections, admin, name, {})
    [(key, props, body)] = cc.messages
    assert (key, body) == (src, "m")
    [entry] = props.headers["x-death"]
    assert entry["routing-keys"] == [src, "k-cc"], "the routing key and CC, never BCC"
    assert props.headers["CC"] == ["k-cc"]
    assert "BCC" not in props.headers
    assert dl.messages == []


def test_dead_lettered_with_a_routing_key_loses_cc(connections, admin, name):
    src, (cc, dl) = dead_letter(connections, admin, name, {"x-dead-letter-routing-key": "dl-key"})
    [(key, props, body)] = dl.messages
    assert (key, body) == ("dl-key", "m")
    [entry] = props.headers["x-death"]
    assert entry["routing-keys"] == [src, "k-cc"]
    assert "CC" not in props.headers
    assert cc.messages == []

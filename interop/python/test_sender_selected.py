"""Sender-selected distribution through pika, as RabbitMQ answers it (compared with Debian's
RabbitMQ 3.10): CC and BCC headers add routing keys, BCC never reaches a consumer, and a CC
header that is not an array closes the channel with 406."""

import pika
import pytest

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

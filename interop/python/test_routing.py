"""(b) topic, (c) fanout and (d) headers exchanges.

Each queue is consumed until a last "sentinel" message that reaches it; since
one channel's publishes reach a queue in order, everything that arrived before
the sentinel is exactly what was routed there: no wait for silence is needed.
"""

import pika

from helpers import Collector, wait_until


def test_topic_routing(connections, admin, name):
    exchange = admin.exchange(name("logs"), "topic")
    conn = connections()
    ch = conn.channel()
    everything_log = admin.queue(name("log-hash"))
    any_error = admin.queue(name("star-error"))
    ch.queue_bind(everything_log, exchange, "log.#")
    ch.queue_bind(any_error, exchange, "*.error")
    to_log = Collector(ch, everything_log)
    to_error = Collector(ch, any_error)

    keys = ["log", "log.a.b", "app.error", "app.x.error", "error", "logs.a", "log.error"]
    for key in keys:
        ch.basic_publish(exchange, key, key.encode())
    # "log.error" matches both patterns and is published last: the sentinel.
    wait_until(
        [conn],
        lambda: "log.error" in to_log.bodies and "log.error" in to_error.bodies,
        "the sentinel log.error on both queues",
    )

    assert to_log.bodies == ["log", "log.a.b", "log.error"], f"log.# received {to_log.bodies}"
    assert to_error.bodies == ["app.error", "log.error"], f"*.error received {to_error.bodies}"
    assert [key for key, _, _ in to_log.messages] == to_log.bodies, "routing key not delivered as published"


def test_fanout_to_several_queues(connections, admin, name):
    exchange = admin.exchange(name("broadcast"), "fanout")
    conn = connections()
    ch = conn.channel()
    collectors = []
    for i, binding_key in enumerate(["", "ignored", "also.ignored"]):
        queue = admin.queue(name(f"q{i}"))
        ch.queue_bind(queue, exchange, binding_key)
        collectors.append(Collector(ch, queue))
    unbound = admin.queue(name("unbound"))

    expected = [f"m{i}" for i in range(10)]
    for i, body in enumerate(expected):
        ch.basic_publish(exchange, f"key.{i}", body.encode())
    wait_until(
        [conn],
        lambda: all(len(c.bodies) >= len(expected) for c in collectors),
        "every message on every bound queue",
    )
    for c in collectors:
        assert c.bodies == expected, f"{c.queue} received {c.bodies}"
    ok = ch.queue_declare(unbound, passive=True)
    assert ok.method.message_count == 0, "an unbound queue received a fanout message"


def test_headers_exchange_all_and_any(connections, admin, name):
    exchange = admin.exchange(name("match"), "headers")
    conn = connections()
    ch = conn.channel()
    q_all = admin.queue(name("all"))
    q_any = admin.queue(name("any"))
    ch.queue_bind(q_all, exchange, "", arguments={"x-match": "all", "format": "pdf", "type": "report"})
    ch.queue_bind(q_any, exchange, "", arguments={"x-match": "any", "format": "pdf", "type": "report"})
    to_all = Collector(ch, q_all)
    to_any = Collector(ch, q_any)

    cases = [
        ("both-headers", {"format": "pdf", "type": "report"}),
        ("format-only", {"format": "pdf"}),
        ("type-only", {"type": "report"}),
        ("wrong-values", {"format": "zip", "type": "log"}),
        ("one-wrong", {"format": "zip", "type": "report"}),
        ("no-headers", None),
        ("extra-header", {"format": "pdf", "type": "report", "size": 3}),
        ("sentinel", {"format": "pdf", "type": "report"}),
    ]
    for body, headers in cases:
        ch.basic_publish(exchange, "any.key", body.encode(), pika.BasicProperties(headers=headers))
    wait_until(
        [conn],
        lambda: "sentinel" in to_all.bodies and "sentinel" in to_any.bodies,
        "the sentinel on both queues",
    )

    assert to_all.bodies == ["both-headers", "extra-header", "sentinel"], f"x-match=all received {to_all.bodies}"
    assert to_any.bodies == [
        "both-headers",
        "format-only",
        "type-only",
        "one-wrong",
        "extra-header",
        "sentinel",
    ], f"x-match=any received {to_any.bodies}"
    _, properties, _ = to_all.messages[1]
    assert properties.headers == {"format": "pdf", "type": "report", "size": 3}, "headers not delivered intact"

"""(h) RabbitMQ's queue features through pika: dead-lettering and x-death, TTL, length limits,
priority queues, consumer priorities, single active consumer, exclusive consumers and the
delivery limit (quorum queues in RabbitMQ, classic ones in Pigeon)."""

import datetime
import time

import pika
import pytest

from helpers import connect, wait_until


def now():
    return int(time.time())


def delivery_limit(connection, limit):
    """Queue arguments for a delivery limit: RabbitMQ keeps delivery limits to quorum queues,
    Pigeon has them on its classic queues too, and runs quorum queues only on clustered nodes."""
    args = {"x-delivery-limit": limit}
    if connection._impl.server_properties.get("product") == "RabbitMQ":
        args["x-queue-type"] = "quorum"
    return args


def dead_letter_target(admin, name):
    """A fanout exchange with one queue bound: (exchange, queue)."""
    exchange = admin.exchange(name("dlx"), "fanout")
    dlq = admin.queue(name("dlq"))
    admin.channel.queue_bind(dlq, exchange)
    return exchange, dlq


class Collector:
    """Consumes a queue with auto-ack and keeps (method, properties, body) of each delivery."""

    def __init__(self, channel, queue, **kwargs):
        self.messages = []
        self.tag = channel.basic_consume(queue, self._on, auto_ack=True, **kwargs)

    def _on(self, _ch, method, properties, body):
        self.messages.append((method, properties, body.decode()))

    @property
    def bodies(self):
        return [body for _, _, body in self.messages]


class Holder:
    """Consumes with manual acks and holds every delivery until the test settles it."""

    def __init__(self, channel, queue, **kwargs):
        self.channel = channel
        self.held = []
        self.tag = channel.basic_consume(queue, self._on, **kwargs)

    def _on(self, _ch, method, properties, body):
        self.held.append((method, properties, body.decode()))

    @property
    def bodies(self):
        return [body for _, _, body in self.held]


def drain(channel, queue):
    out = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append(body.decode())


def assert_death(entry, count, reason, queue, exchange, routing_keys, since, original_expiration=None):
    expected = {"count", "reason", "queue", "time", "exchange", "routing-keys"}
    if original_expiration is not None:
        expected.add("original-expiration")
    assert set(entry) == expected, entry
    assert entry["count"] == count and isinstance(entry["count"], int), entry
    assert entry["reason"] == reason, entry
    assert entry["queue"] == queue, entry
    assert entry["exchange"] == exchange, entry
    assert entry["routing-keys"] == routing_keys, entry
    assert isinstance(entry["time"], datetime.datetime), entry
    stamp = int(entry["time"].replace(tzinfo=datetime.timezone.utc).timestamp())
    assert since <= stamp <= now(), entry
    assert entry.get("original-expiration") == original_expiration, entry


# --- dead-lettering -------------------------------------------------------------------------


def test_rejected_message_is_dead_lettered_with_x_death(connections, admin, name):
    exchange, dlq = dead_letter_target(admin, name)
    src = admin.queue(name("src"), arguments={"x-dead-letter-exchange": exchange})
    conn = connections()
    ch = conn.channel()
    since = now()
    ch.basic_publish("", src, b"doomed", pika.BasicProperties(headers={"app": "kept"}))
    worker = Holder(ch, src)
    wait_until([conn], lambda: worker.held, "the delivery to reject")
    ch.basic_reject(worker.held[0][0].delivery_tag, requeue=False)

    dead = Collector(ch, dlq)
    wait_until([conn], lambda: dead.messages, "the dead letter")
    method, props, body = dead.messages[0]
    assert (method.exchange, method.routing_key, body) == (exchange, src, "doomed")
    assert props.headers["app"] == "kept"
    [entry] = props.headers["x-death"]
    assert_death(entry, 1, "rejected", src, "", [src], since)
    assert props.headers["x-first-death-reason"] == "rejected"
    assert props.headers["x-first-death-queue"] == src
    assert props.headers["x-first-death-exchange"] == ""


def test_expired_message_is_dead_lettered_with_its_routing_key_replaced(connections, admin, name):
    exchange = admin.exchange(name("dlx"), "direct")
    dlq = admin.queue(name("dlq"))
    admin.channel.queue_bind(dlq, exchange, "expired.key")
    src = admin.queue(
        name("src"),
        arguments={"x-dead-letter-exchange": exchange, "x-dead-letter-routing-key": "expired.key"},
    )
    conn = connections()
    ch = conn.channel()
    dead = Collector(ch, dlq)
    since = now()
    ch.basic_publish("", src, b"short-lived", pika.BasicProperties(expiration="30"))
    wait_until([conn], lambda: dead.messages, "the expired message")
    method, props, body = dead.messages[0]
    assert (method.routing_key, body) == ("expired.key", "short-lived")
    assert props.expiration is None, "the expiration is removed from the dead letter"
    [entry] = props.headers["x-death"]
    assert_death(entry, 1, "expired", src, "", [src], since, original_expiration="30")


def test_overflowing_messages_die_with_reason_maxlen(connections, admin, name):
    exchange, dlq = dead_letter_target(admin, name)
    drop_head = admin.queue(
        name("drop-head"), arguments={"x-dead-letter-exchange": exchange, "x-max-length": 1}
    )
    reject_dlx = admin.queue(
        name("reject-dlx"),
        arguments={
            "x-dead-letter-exchange": exchange,
            "x-max-length": 1,
            "x-overflow": "reject-publish-dlx",
        },
    )
    conn = connections()
    ch = conn.channel()
    ch.confirm_delivery()
    dead = Collector(conn.channel(), dlq)
    since = now()
    ch.basic_publish("", drop_head, b"old")
    ch.basic_publish("", drop_head, b"new")
    ch.basic_publish("", reject_dlx, b"fits")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", reject_dlx, b"refused")
    wait_until([conn], lambda: len(dead.messages) >= 2, "two dead letters")
    assert sorted(dead.bodies) == ["old", "refused"]
    for _, props, body in dead.messages:
        [entry] = props.headers["x-death"]
        queue = drop_head if body == "old" else reject_dlx
        assert_death(entry, 1, "maxlen", queue, "", [queue], since)
    assert drain(ch, drop_head) == ["new"]
    assert drain(ch, reject_dlx) == ["fits"]


def test_rejection_loop_counts_deaths_in_one_entry(connections, admin, name):
    queue = name("boomerang")
    admin.queue(queue, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue})
    conn = connections()
    ch = conn.channel()
    since = now()
    ch.basic_publish("", queue, b"again")
    worker = Holder(ch, queue)
    for round in range(3):
        wait_until([conn], lambda: len(worker.held) > round, f"delivery {round + 1}")
        method = worker.held[round][0]
        if round < 2:
            ch.basic_nack(method.delivery_tag, requeue=False)
        else:
            ch.basic_ack(method.delivery_tag)
    _, props, _ = worker.held[2]
    [entry] = props.headers["x-death"]
    assert_death(entry, 2, "rejected", queue, "", [queue], since)


def test_expiry_cycle_ends(connections, admin, name):
    """q1 and q2 let messages expire into each other and into an observer: the message dies
    once in each, then RabbitMQ drops it instead of cycling."""
    x1 = admin.exchange(name("x1"), "fanout")
    x2 = admin.exchange(name("x2"), "fanout")
    observer = admin.queue(name("observer"))
    q1 = admin.queue(name("q1"), arguments={"x-dead-letter-exchange": x1, "x-message-ttl": 300})
    q2 = admin.queue(name("q2"), arguments={"x-dead-letter-exchange": x2, "x-message-ttl": 300})
    for queue, exchange in [(q2, x1), (observer, x1), (q1, x2), (observer, x2)]:
        admin.channel.queue_bind(queue, exchange)
    conn = connections()
    ch = conn.channel()
    seen = Collector(ch, observer)
    ch.basic_publish("", q1, b"looping")
    wait_until([conn], lambda: len(seen.messages) >= 2, "two deaths of the looping message")
    ch.basic_publish("", q1, b"marker")  # dies twice after the looping one would have died again

    def marker_died_twice():
        return any(b == "marker" and len(p.headers["x-death"]) == 2 for _, p, b in seen.messages)

    wait_until([conn], marker_died_twice, "the marker's second death")
    assert seen.bodies == ["looping", "looping", "marker", "marker"]


# --- TTL and x-expires ----------------------------------------------------------------------


def test_expired_message_behind_the_head_is_never_delivered(connections, admin, name):
    exchange, dlq = dead_letter_target(admin, name)
    queue = admin.queue(name("q"), arguments={"x-dead-letter-exchange": exchange})
    # A clock: a message published after "short" to a queue with the same TTL. Once it is
    # dead-lettered, "short" has expired too (RabbitMQ dead-letters "short" only when it reaches
    # the head; Pigeon may do so earlier).
    clock = admin.queue(name("clock"), arguments={"x-dead-letter-exchange": exchange, "x-message-ttl": 20})
    conn = connections()
    ch = conn.channel()
    ch.confirm_delivery()
    dead = Collector(conn.channel(), dlq)
    ch.basic_publish("", queue, b"head")
    ch.basic_publish("", queue, b"short", pika.BasicProperties(expiration="20"))
    ch.basic_publish("", queue, b"tail")
    ch.basic_publish("", clock, b"clock")
    wait_until([conn], lambda: "clock" in dead.bodies, "the clock message to expire")
    worker = Collector(ch, queue)
    wait_until([conn], lambda: len(worker.messages) >= 2 and "short" in dead.bodies, "head, tail and the dead letter")
    assert worker.bodies == ["head", "tail"]
    assert sorted(dead.bodies) == ["clock", "short"]


def test_unused_queue_with_x_expires_is_deleted(connections, name):
    conn = connections()
    ch = conn.channel()
    ch.confirm_delivery()
    queue = name("expiring")
    ch.queue_declare(queue, arguments={"x-expires": 200})
    deadline = time.monotonic() + 10
    while True:  # publishing does not count as use; once the queue is gone it comes back
        try:
            ch.basic_publish("", queue, b"probe", mandatory=True)
        except pika.exceptions.UnroutableError:
            break
        assert time.monotonic() < deadline, "the queue was not deleted"
        conn.process_data_events(time_limit=0.02)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
        ch.queue_declare(queue, passive=True)
    assert gone.value.reply_code == 404


# --- length limits --------------------------------------------------------------------------


def test_length_limits_drop_head_and_reject_publish(connections, admin, name):
    drop = admin.queue(name("drop"), arguments={"x-max-length": 2})
    nbytes = admin.queue(name("bytes"), arguments={"x-max-length-bytes": 5, "x-overflow": "reject-publish"})
    ch = connections().channel()
    ch.confirm_delivery()
    for i in range(4):
        ch.basic_publish("", drop, f"m{i}".encode())
    assert drain(ch, drop) == ["m2", "m3"]
    ch.basic_publish("", nbytes, b"abc")
    ch.basic_publish("", nbytes, b"de")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", nbytes, b"f")
    assert ch.is_open
    assert drain(ch, nbytes) == ["abc", "de"]


# --- priorities -----------------------------------------------------------------------------


def test_priority_queue_orders_by_priority_then_arrival(connections, admin, name):
    queue = admin.queue(name("prio"), arguments={"x-max-priority": 5})
    ch = connections().channel()
    ch.confirm_delivery()
    for body, priority in [("n", None), ("l1", 1), ("h1", 5), ("l2", 1), ("over", 9), ("h2", 5)]:
        ch.basic_publish("", queue, body.encode(), pika.BasicProperties(priority=priority))
    assert drain(ch, queue) == ["h1", "over", "h2", "l1", "l2", "n"]


def test_priorities_with_prefetch(connections, admin, name):
    queue = admin.queue(name("prio"), arguments={"x-max-priority": 10})
    conn = connections()
    consumer_ch = conn.channel()
    consumer_ch.basic_qos(prefetch_count=1)
    worker = Holder(consumer_ch, queue)
    pub = connections().channel()
    pub.confirm_delivery()
    pub.basic_publish("", queue, b"first", pika.BasicProperties(priority=1))
    wait_until([conn], lambda: worker.held, "the first delivery")
    for body, priority in [("low", 1), ("high", 9), ("mid", 5)]:
        pub.basic_publish("", queue, body.encode(), pika.BasicProperties(priority=priority))
    for i in range(4):
        wait_until([conn], lambda: len(worker.held) > i, f"delivery {i + 1}")
        assert len(worker.held) == i + 1, "prefetch 1 holds one message at a time"
        consumer_ch.basic_ack(worker.held[i][0].delivery_tag)
    assert worker.bodies == ["first", "high", "mid", "low"]


# --- consumers ------------------------------------------------------------------------------


def test_consumer_priority_prefers_the_higher_one_while_it_has_credit(connections, admin, name):
    queue = admin.queue(name("q"))
    conn = connections()
    low_ch, high_ch = conn.channel(), conn.channel()
    low_ch.basic_qos(prefetch_count=10)
    high_ch.basic_qos(prefetch_count=2)
    low = Holder(low_ch, queue, arguments={"x-priority": 1})
    high = Holder(high_ch, queue, arguments={"x-priority": 10})
    pub = connections().channel()
    pub.confirm_delivery()
    for i in range(5):
        pub.basic_publish("", queue, f"m{i}".encode())
    wait_until([conn], lambda: len(high.held) + len(low.held) >= 5, "five deliveries")
    assert (high.bodies, low.bodies) == (["m0", "m1"], ["m2", "m3", "m4"])


def test_single_active_consumer_fails_over_in_order(connections, admin, name):
    queue = admin.queue(name("sac"), arguments={"x-single-active-consumer": True})
    conn = connections()
    active_ch, standby_ch = conn.channel(), conn.channel()
    active_ch.basic_qos(prefetch_count=2)
    active = Holder(active_ch, queue)
    standby = Holder(standby_ch, queue)
    pub = connections().channel()
    pub.confirm_delivery()
    for i in range(4):
        pub.basic_publish("", queue, f"m{i}".encode())
    wait_until([conn], lambda: len(active.held) == 2, "the active consumer's two deliveries")
    assert standby.held == []
    active_ch.close()
    wait_until([conn], lambda: len(standby.held) >= 4, "the standby to take over")
    got = [(body, method.redelivered) for method, _, body in standby.held]
    assert got == [("m0", True), ("m1", True), ("m2", False), ("m3", False)]


def test_exclusive_consumer_refuses_others_with_403(connections, admin, name):
    queue = admin.queue(name("q"))
    conn = connections()
    conn.channel().basic_consume(queue, lambda *a: None, exclusive=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        conn.channel().basic_consume(queue, lambda *a: None)
    assert refused.value.reply_code == 403


def test_delivery_limit_counts_redeliveries_and_dead_letters(connections, admin, name):
    exchange, dlq = dead_letter_target(admin, name)
    conn = connections()
    queue = admin.queue(
        name("qq"),
        durable=True,
        arguments={**delivery_limit(conn, 1), "x-dead-letter-exchange": exchange},
    )
    ch = conn.channel()
    since = now()
    ch.basic_publish("", queue, b"poison")
    worker = Holder(ch, queue)
    for i in range(2):
        wait_until([conn], lambda: len(worker.held) > i, f"delivery {i + 1}")
        ch.basic_nack(worker.held[i][0].delivery_tag, requeue=True)
    dead = Collector(ch, dlq)
    wait_until([conn], lambda: dead.messages, "the dead letter")
    counts = [(m.redelivered, (p.headers or {}).get("x-delivery-count")) for m, p, _ in worker.held]
    assert counts == [(False, None), (True, 1)]
    [entry] = dead.messages[0][1].headers["x-death"]
    assert_death(entry, 1, "delivery_limit", queue, "", [queue], since)


def test_ttl_and_rejections_under_concurrent_consumers(connections, admin, name):
    """Two consumers on their own connections, one rejecting everything: every message is
    either acked or dead-lettered exactly once, never both."""
    exchange, dlq = dead_letter_target(admin, name)
    queue = admin.queue(name("work"), arguments={"x-dead-letter-exchange": exchange, "x-message-ttl": 50})
    conns = [connections(), connections()]
    acker_ch, rejecter_ch = conns[0].channel(), conns[1].channel()
    for ch in (acker_ch, rejecter_ch):
        ch.basic_qos(prefetch_count=1)
    acked, rejected = [], []

    def on_ack(ch, method, _props, body):
        ch.basic_ack(method.delivery_tag)
        acked.append(body.decode())

    def on_reject(ch, method, _props, body):
        ch.basic_reject(method.delivery_tag, requeue=False)
        rejected.append(body.decode())

    acker_ch.basic_consume(queue, on_ack)
    rejecter_ch.basic_consume(queue, on_reject)
    obs = connections()
    dead = Collector(obs.channel(), dlq)
    pub = connections().channel()
    pub.confirm_delivery()
    n = 100
    for i in range(n):
        pub.basic_publish("", queue, f"m{i}".encode())
    wait_until(conns + [obs], lambda: len(acked) + len(dead.messages) >= n, "every message settled")
    reasons = {body: p.headers["x-death"][0]["reason"] for _, p, body in dead.messages}
    assert len(dead.messages) == len(reasons), "a message was dead-lettered twice"
    assert sorted(acked + list(reasons)) == sorted(f"m{i}" for i in range(n))
    assert not set(acked) & set(reasons), "a message was both acked and dead-lettered"
    for body in rejected:
        assert reasons[body] == "rejected"
    for body, reason in reasons.items():
        assert (reason == "rejected") == (body in rejected), (body, reason)

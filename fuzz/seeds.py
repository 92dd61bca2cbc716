#!/usr/bin/env python3
"""Writes the seed corpora of the whole-connection fuzz targets (docs/fuzzing.md):
fuzz/corpus/{amqp_conn,mqtt_conn,http_api,ws_stream,mixed_conn,stream_conn}/seed-*. Each seed is a short, valid session in
the target's input format (see the doc comment at the top of each target), so that the
fuzzer starts from queues, exchanges, consumers, subscriptions and API objects that exist.

Run from anywhere: python3 fuzz/seeds.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- AMQP (amqp_conn.rs)
METHODS = [
    (10, 11), (10, 21), (10, 31), (10, 40), (10, 50), (10, 51), (10, 60), (10, 61), (10, 70),
    (20, 10), (20, 20), (20, 21), (20, 40), (20, 41),
    (40, 10), (40, 20), (40, 30), (40, 40),
    (50, 10), (50, 20), (50, 30), (50, 40), (50, 50),
    (60, 10), (60, 20), (60, 30), (60, 40), (60, 70), (60, 80), (60, 90), (60, 100),
    (60, 110), (60, 120),
    (85, 10), (90, 10), (90, 20), (90, 30),
]


def ss(s):
    b = s.encode() if isinstance(s, str) else s
    return bytes([len(b)]) + b


def ls(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


def table(entries=()):
    body = b""
    for k, v in entries:
        body += ss(k)
        if isinstance(v, bool):
            body += b"t" + bytes([int(v)])
        elif isinstance(v, int):
            body += b"l" + struct.pack(">q", v)
        elif isinstance(v, str):
            body += b"S" + ls(v)
        else:
            body += v  # pre-encoded type and value
    return struct.pack(">I", len(body)) + body


def bits(*flags):
    return bytes([sum(1 << i for i, f in enumerate(flags) if f)])


def m(c, ch, cls_method, args):
    """A method step on connection c."""
    return bytes([4 | c, ch, METHODS.index(cls_method), len(args)]) + args


def content(c, ch, body, props=b"\x00\x00"):
    return bytes([8 | c, ch, len(props)]) + props + struct.pack(">H", len(body)) + body


def run(c, quarters):
    return bytes([12 | c, quarters])


def eof(c):
    return bytes([16 | c])


def tick(c=0):
    return bytes([20 | c])


def qdeclare(c, ch, q, args=(), durable=False, exclusive=False, auto_delete=False, passive=False):
    return m(c, ch, (50, 10), b"\0\0" + ss(q) + bits(passive, durable, exclusive, auto_delete, False) + table(args))


def xdeclare(c, ch, x, kind, args=()):
    return m(c, ch, (40, 10), b"\0\0" + ss(x) + ss(kind) + bits(False, False, False, False, False) + table(args))


def bind(c, ch, q, x, rk, args=()):
    return m(c, ch, (50, 20), b"\0\0" + ss(q) + ss(x) + ss(rk) + bits(False) + table(args))


def publish(c, ch, x, rk, body=b"hello", mandatory=False, props=b"\x00\x00"):
    return m(c, ch, (60, 40), b"\0\0" + ss(x) + ss(rk) + bits(mandatory, False)) + content(c, ch, body, props)


def consume(c, ch, q, tag="t", no_ack=False, exclusive=False, args=()):
    return m(c, ch, (60, 20), b"\0\0" + ss(q) + ss(tag) + bits(False, no_ack, exclusive, False) + table(args))


def get(c, ch, q, no_ack=False):
    return m(c, ch, (60, 70), b"\0\0" + ss(q) + bits(no_ack))


def ack(c, ch, tag, multiple=False):
    return m(c, ch, (60, 80), struct.pack(">Q", tag) + bits(multiple))


def nack(c, ch, tag, multiple=False, requeue=True):
    return m(c, ch, (60, 120), struct.pack(">Q", tag) + bits(multiple, requeue))


def reject(c, ch, tag, requeue=False):
    return m(c, ch, (60, 90), struct.pack(">Q", tag) + bits(requeue))


def qos(c, ch, count, glob=False):
    return m(c, ch, (60, 10), struct.pack(">IH", 0, count) + bits(glob))


def chopen(c, ch):
    return m(c, ch, (20, 10), b"\0")


def chclose(c, ch):
    return m(c, ch, (20, 40), struct.pack(">H", 200) + ss("bye") + b"\0\0\0\0")


# Properties: flags then values. content-type (bit 15), delivery-mode (bit 12),
# priority (bit 11), expiration (bit 8), headers (bit 13).
PERSISTENT = struct.pack(">H", 1 << 12) + b"\x02"
def prio(p):
    return struct.pack(">H", 1 << 11) + bytes([p])
def expiring(ms):
    return struct.pack(">H", 1 << 8) + ss(str(ms))
def with_headers(entries):
    return struct.pack(">H", 1 << 13) + table(entries)


def amqp_seeds():
    s = {}
    s["default-exchange"] = bytes([0]) + qdeclare(0, 1, "q") + publish(0, 1, "", "q") + consume(0, 1, "q") + run(0, 1) + ack(0, 1, 1) + chclose(0, 1)
    s["topic-get-nack"] = bytes([0]) + xdeclare(0, 1, "x", "topic") + qdeclare(0, 1, "q") + bind(0, 1, "q", "x", "a.*") + publish(0, 1, "x", "a.b") + get(0, 1, "q") + nack(0, 1, 1) + get(0, 1, "q") + reject(0, 1, 2)
    s["confirm-mandatory"] = bytes([0]) + m(0, 1, (85, 10), bits(False)) + publish(0, 1, "amq.direct", "nowhere", mandatory=True) + qdeclare(0, 1, "q") + publish(0, 1, "", "q", props=PERSISTENT) + run(0, 1)
    s["tx"] = bytes([0]) + m(0, 1, (90, 10), b"") + qdeclare(0, 1, "q") + publish(0, 1, "", "q") + m(0, 1, (90, 30), b"") + publish(0, 1, "", "q") + m(0, 1, (90, 20), b"") + get(0, 1, "q") + ack(0, 1, 1) + m(0, 1, (90, 20), b"")
    s["ttl-dlx-maxlen"] = bytes([0]) + xdeclare(0, 1, "dlx", "fanout") + qdeclare(0, 1, "dead") + bind(0, 1, "dead", "dlx", "") + qdeclare(0, 1, "q", [("x-message-ttl", 500), ("x-dead-letter-exchange", "dlx"), ("x-max-length", 2), ("x-overflow", "reject-publish-dlx")]) + publish(0, 1, "", "q") + publish(0, 1, "", "q", props=expiring(100)) + publish(0, 1, "", "q") + run(0, 8) + tick() + get(0, 1, "dead")
    s["two-conns"] = bytes([1]) + qdeclare(0, 1, "q") + consume(0, 1, "q", exclusive=True) + publish(1, 1, "", "q") + publish(1, 1, "", "q") + run(0, 1) + ack(0, 1, 2, multiple=True) + chclose(0, 1) + m(1, 1, (50, 40), b"\0\0" + ss("q") + bits(False, False, False))
    s["three-conns-exclusive"] = bytes([2]) + qdeclare(0, 1, "ex", exclusive=True) + consume(1, 1, "ex") + publish(2, 1, "", "ex") + eof(0) + qdeclare(1, 1, "ex") + run(1, 4)
    s["priority"] = bytes([0]) + qdeclare(0, 1, "p", [("x-max-priority", 5)]) + publish(0, 1, "", "p", props=prio(1)) + publish(0, 1, "", "p", props=prio(9)) + qos(0, 1, 1) + consume(0, 1, "p") + run(0, 1) + ack(0, 1, 1) + run(0, 1)
    s["quorum"] = bytes([0]) + qdeclare(0, 1, "qq", [("x-queue-type", "quorum"), ("x-delivery-limit", 1)], durable=True) + publish(0, 1, "", "qq") + consume(0, 1, "qq") + nack(0, 1, 1) + run(0, 1) + nack(0, 1, 2)
    s["stream"] = bytes([0]) + qdeclare(0, 1, "s", [("x-queue-type", "stream")], durable=True) + publish(0, 1, "", "s") + qos(0, 1, 10) + consume(0, 1, "s", args=[("x-stream-offset", "first")]) + run(0, 1)
    s["headers-exchange"] = bytes([0]) + xdeclare(0, 1, "h", "headers") + qdeclare(0, 1, "q") + bind(0, 1, "q", "h", "", [("x-match", "all"), ("k", "v")]) + publish(0, 1, "h", "", props=with_headers([("k", "v")])) + get(0, 1, "q", no_ack=True)
    s["exchange-bind"] = bytes([0]) + xdeclare(0, 1, "a", "fanout") + xdeclare(0, 1, "b", "direct") + m(0, 1, (40, 30), b"\0\0" + ss("b") + ss("a") + ss("") + bits(False) + table()) + qdeclare(0, 1, "q") + bind(0, 1, "q", "b", "k") + publish(0, 1, "a", "k") + m(0, 1, (40, 40), b"\0\0" + ss("b") + ss("a") + ss("") + bits(False) + table()) + m(0, 1, (40, 20), b"\0\0" + ss("a") + bits(False, False))
    s["recover-cancel"] = bytes([0]) + qdeclare(0, 1, "q") + publish(0, 1, "", "q") + consume(0, 1, "q", tag="c1") + run(0, 1) + m(0, 1, (60, 110), bits(True)) + run(0, 1) + m(0, 1, (60, 30), ss("c1") + bits(False)) + m(0, 1, (50, 30), b"\0\0" + ss("q") + bits(False))
    s["channels-flow"] = bytes([0]) + chopen(0, 2) + m(0, 2, (20, 20), bits(False)) + qdeclare(0, 2, "q") + consume(0, 2, "q", no_ack=True) + publish(0, 1, "", "q") + m(0, 2, (20, 20), bits(True)) + run(0, 1) + chclose(0, 2) + m(0, 0, (10, 50), struct.pack(">H", 200) + ss("") + b"\0\0\0\0")
    s["heartbeat"] = bytes([16]) + qdeclare(0, 1, "q") + run(0, 60)
    s["auto-delete-unbind"] = bytes([0]) + qdeclare(0, 1, "ad", auto_delete=True) + bind(0, 1, "ad", "amq.topic", "#") + consume(0, 1, "ad", tag="c") + m(0, 1, (50, 50), b"\0\0" + ss("ad") + ss("amq.topic") + ss("#") + table()) + m(0, 1, (60, 30), ss("c") + bits(False))
    s["expires"] = bytes([0]) + qdeclare(0, 1, "e", [("x-expires", 1000)]) + run(0, 8) + tick() + qdeclare(0, 1, "e", passive=True)
    s["dlx-cycle"] = bytes([0]) + qdeclare(0, 1, "a", [("x-dead-letter-exchange", ""), ("x-dead-letter-routing-key", "b")]) + qdeclare(0, 1, "b", [("x-dead-letter-exchange", ""), ("x-dead-letter-routing-key", "a"), ("x-message-ttl", 0)]) + publish(0, 1, "", "a") + get(0, 1, "a") + reject(0, 1, 1) + run(0, 2) + tick() + get(0, 1, "a")
    s["alternate-exchange"] = bytes([0]) + xdeclare(0, 1, "ae", "fanout") + xdeclare(0, 1, "main", "direct", [("alternate-exchange", "ae")]) + qdeclare(0, 1, "q") + bind(0, 1, "q", "ae", "") + publish(0, 1, "main", "none", mandatory=True) + get(0, 1, "q", no_ack=True)
    s["cc-bcc"] = bytes([0]) + qdeclare(0, 1, "q1") + qdeclare(0, 1, "q2") + publish(0, 1, "", "q1", props=with_headers([("CC", b"A" + struct.pack(">I", 7) + b"S" + ls("q2")), ("BCC", b"A" + struct.pack(">I", 7) + b"S" + ls("q2"))])) + get(0, 1, "q2")
    s["single-active"] = bytes([1]) + qdeclare(0, 1, "sac", [("x-single-active-consumer", True)]) + consume(0, 1, "sac", tag="a") + consume(1, 1, "sac", tag="b", args=[("x-priority", 5)]) + publish(1, 1, "", "sac") + run(0, 1) + eof(0) + publish(1, 1, "", "sac") + run(1, 1)
    big = b"x" * 300
    s["multi-frame-body"] = bytes([0]) + qdeclare(0, 1, "q") + m(0, 1, (60, 40), b"\0\0" + ss("") + ss("q") + bits(False, False)) + bytes([8, 1, 2, 0, 0]) + struct.pack(">H", 600) + big + big + get(0, 1, "q")
    s["content-out-of-place"] = bytes([0]) + content(0, 1, b"stray") + m(0, 1, (60, 40), b"\0\0" + ss("") + ss("q") + bits(False, False)) + chclose(0, 1) + content(0, 2, b"x")
    s["update-secret"] = bytes([0]) + m(0, 0, (10, 70), ls(b"\0guest\0guest") + ss("refresh")) + qdeclare(0, 1, "q")
    s["max-length-bytes-confirm"] = bytes([0]) + m(0, 1, (85, 10), bits(False)) + qdeclare(0, 1, "mlb", [("x-max-length-bytes", 6), ("x-overflow", "reject-publish")]) + publish(0, 1, "", "mlb") + publish(0, 1, "", "mlb") + run(0, 1)
    s["delete-under-consumer"] = bytes([1]) + qdeclare(0, 1, "q") + consume(0, 1, "q", tag="c") + publish(1, 1, "", "q") + m(1, 1, (50, 40), b"\0\0" + ss("q") + bits(False, False, False)) + run(0, 1) + ack(0, 1, 1)
    s["internal-exchange"] = bytes([0]) + m(0, 1, (40, 10), b"\0\0" + ss("i") + ss("fanout") + bits(False, False, False, True, False) + table()) + publish(0, 1, "i", "") + chopen(0, 1)
    s["prefetch-global"] = bytes([0]) + qos(0, 1, 1, glob=True) + qos(0, 1, 2) + qdeclare(0, 1, "q") + publish(0, 1, "", "q") + publish(0, 1, "", "q") + publish(0, 1, "", "q") + consume(0, 1, "q", tag="a") + consume(0, 1, "q", tag="b") + run(0, 1) + ack(0, 1, 0, multiple=True) + run(0, 1)
    # Raw: the fuzzer's own handshake (header, start-ok, tune-ok, open).
    hs = b"AMQP\x00\x00\x09\x01"
    def frame(t, ch, p):
        return bytes([t]) + struct.pack(">HI", ch, len(p)) + p + b"\xce"
    start_ok = frame(1, 0, struct.pack(">HH", 10, 11) + table([("product", "x")]) + ss("AMQPLAIN") + ls(b"\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x05guest") + ss("en_US"))
    tune_ok = frame(1, 0, struct.pack(">HHHIH", 10, 31, 0, 4096, 0))
    open_ = frame(1, 0, struct.pack(">HH", 10, 40) + ss("/") + ss("") + b"\0")
    raw = hs + start_ok + tune_ok + open_
    s["raw-amqplain"] = bytes([4]) + b"".join(bytes([0, len(raw[i:i + 200])]) + raw[i:i + 200] for i in range(0, len(raw), 200)) + chopen(0, 1) + qdeclare(0, 1, "q")
    s["raw-bad-header"] = bytes([4, 0, 8]) + b"AMQP\x01\x01\x00\x09"
    return s


# ---------------------------------------------------------------- MQTT (mqtt_conn.rs)
def mstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def pkt(c, first, rest):
    return bytes([4 | c, first, len(rest)]) + rest


def subscribe(c, pid, topic, qos=1, v5=False, props=b""):
    body = struct.pack(">H", pid) + ((bytes([len(props)]) + props) if v5 else b"") + mstr(topic) + bytes([qos])
    return pkt(c, 0x82, body)


def unsubscribe(c, pid, topic, v5=False):
    return pkt(c, 0xA2, struct.pack(">H", pid) + (b"\0" if v5 else b"") + mstr(topic))


def mpublish(c, topic, payload=b"hi", qos=0, retain=False, pid=1, v5=False, props=b""):
    first = 0x30 | (qos << 1) | int(retain)
    body = mstr(topic) + (struct.pack(">H", pid) if qos else b"") + ((bytes([len(props)]) + props) if v5 else b"") + payload
    return pkt(c, first, body)


def mrun(c, q):
    return bytes([8 | c, q])


def mtick(c=0):
    return bytes([16 | c])


def meof(c):
    return bytes([12 | c])


def mqtt_seeds():
    s = {}
    s["v3-sub-pub"] = bytes([0]) + subscribe(0, 1, "a/#") + mpublish(0, "a/b", qos=1) + pkt(0, 0x40, b"\0\1") + mpublish(0, "a/c", qos=2, pid=2) + pkt(0, 0x62, b"\0\2") + mrun(0, 1) + pkt(0, 0xC0, b"") + pkt(0, 0xE0, b"")
    s["v5-sub-pub"] = bytes([8]) + subscribe(0, 1, "a/+", qos=2, v5=True) + mpublish(0, "a/b", qos=1, v5=True) + mpublish(0, "a/b", qos=2, pid=2, v5=True, props=b"\x01\x01\x02\x00\x00\x00\x05") + mrun(0, 1) + pkt(0, 0x50, b"\0\1\0\0") + unsubscribe(0, 3, "a/+", v5=True) + pkt(0, 0xE0, b"\x00\x00")
    s["retained"] = bytes([1]) + mpublish(0, "r/1", retain=True, qos=1) + mpublish(0, "r/2", retain=True) + subscribe(1, 1, "r/#") + mrun(1, 1) + mpublish(0, "r/1", payload=b"", retain=True) + subscribe(1, 2, "r/+")
    s["takeover"] = bytes([1 | 32 | 64]) + subscribe(0, 1, "t/#", qos=1) + mpublish(1, "t/x", qos=1) + mrun(0, 1) + meof(1) + mrun(0, 1)
    s["will"] = bytes([2 | 128]) + subscribe(2, 1, "w/#") + meof(0) + mrun(2, 1) + pkt(1, 0xE0, b"")
    s["will-v5-delay"] = bytes([1 | 8 | 16 | 128]) + subscribe(1, 1, "w/#", v5=True) + meof(0) + mrun(1, 40)
    s["persistent-queue"] = bytes([1 | 64]) + subscribe(0, 1, "p", qos=1) + meof(0) + mpublish(1, "p", qos=1) + mpublish(1, "p", qos=1, pid=2) + mrun(1, 1)
    s["mixed-versions"] = bytes([2 | 8]) + subscribe(0, 1, "#", v5=True) + subscribe(1, 1, "x/y") + mpublish(2, "x/y", qos=2, v5=True) + mrun(0, 1) + pkt(2, 0x62, b"\0\1")
    s["keepalive"] = bytes([0]) + mrun(0, 255) + mrun(0, 255)
    s["shared-sub-v5"] = bytes([1 | 8 | 16]) + subscribe(0, 1, "$share/g/s", v5=True) + subscribe(1, 1, "$share/g/s", v5=True) + mpublish(0, "s", qos=1, v5=True) + mpublish(0, "s", qos=1, pid=2, v5=True) + mrun(0, 1)
    s["topic-alias-v5"] = bytes([8]) + mpublish(0, "al/1", v5=True, props=b"\x23\x00\x01") + mpublish(0, "", v5=True, props=b"\x23\x00\x01") + subscribe(0, 1, "al/#", v5=True, props=b"\x0b\x05")
    # v5 CONNECT with session expiry and receive maximum, then a flow past it.
    v5c = mstr("MQTT") + b"\x05\xc0\x00\x3c" + bytes([8]) + b"\x11\x00\x00\x00\x3c" + b"\x21\x00\x01" + mstr("sx") + mstr("guest") + mstr("guest")
    s["raw-v5-session-expiry"] = bytes([4]) + pkt(0, 0x10, v5c) + subscribe(0, 1, "e/#", qos=2, v5=True) + mpublish(0, "e/1", qos=2, pid=5, v5=True) + mpublish(0, "e/2", qos=1, pid=6, v5=True) + meof(0)
    s["v5-sub-options"] = bytes([8]) + pkt(0, 0x82, struct.pack(">H", 1) + b"\x02\x0b\x07" + mstr("o/#") + bytes([0x04 | 0x08 | 0x20 | 1])) + mpublish(0, "o/1", qos=1, retain=True, v5=True, props=b"\x02\x00\x00\x00\x01") + mrun(0, 8) + subscribe(0, 2, "o/#", v5=True)
    s["v5-auth-and-props"] = bytes([8]) + pkt(0, 0xF0, b"\x18\x00") + mpublish(0, "rr", v5=True, props=b"\x08\x00\x02re\x09\x00\x01x\x26\x00\x01k\x00\x01v\x03\x00\x01t")
    s["v3-qos2-dup"] = bytes([0]) + subscribe(0, 1, "d") + mpublish(0, "d", qos=2, pid=7) + pkt(0, 0x3C, mstr("d") + struct.pack(">H", 7) + b"x") + pkt(0, 0x62, b"\0\x07") + pkt(0, 0x62, b"\0\x07") + mrun(0, 1) + pkt(0, 0x50, b"\0\1") + pkt(0, 0x70, b"\0\1")
    s["wildcards"] = bytes([1]) + subscribe(0, 1, "+/+/#") + subscribe(0, 2, "#") + subscribe(1, 1, "$SYS/#") + mpublish(1, "a/b/c") + mpublish(1, "/") + mpublish(1, "$SYS/x") + unsubscribe(0, 3, "#") + mrun(0, 1)
    s["raw-connect"] = bytes([4]) + pkt(0, 0x10, mstr("MQTT") + b"\x04\x02\x00\x0a" + mstr("raw")) + subscribe(0, 1, "z")
    return s


# ---------------------------------------------------------------- HTTP (http_api.rs)
HMETHODS = ["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"]


def req(method, path, body=None, headers=()):
    p = path.encode()
    if p.startswith(b"/api/"):
        p = p[len(b"/api/"):]
    b = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    out = bytes([HMETHODS.index(method), len(p)]) + p + bytes([len(headers)])
    for n, v in headers:
        out += bytes([len(n)]) + n + bytes([len(v)]) + v
    return out + struct.pack(">H", len(b)) + b


def http_seeds():
    s = {}
    pub = {"properties": {"delivery_mode": 2, "headers": {"a": 1}}, "routing_key": "q", "payload": "aGk=", "payload_encoding": "base64"}
    s["queue-publish-get"] = bytes([0]) + req("PUT", "/api/queues/%2F/q", {"durable": True, "arguments": {"x-max-length": 5}}) + req("POST", "/api/exchanges/%2F/amq.default/publish", pub) + req("POST", "/api/queues/%2F/q/get", {"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 3}) + req("GET", "/api/queues/%2F/q") + req("DELETE", "/api/queues/%2F/q/contents") + req("DELETE", "/api/queues/%2F/q?if-empty=true")
    s["vhost-user-perms"] = bytes([0]) + req("PUT", "/api/vhosts/v", {"description": "d", "tags": "a,b", "default_queue_type": "quorum"}) + req("PUT", "/api/users/u", {"password": "p", "tags": "management"}) + req("PUT", "/api/permissions/v/u", {"configure": ".*", "write": "^a", "read": "("}) + req("PUT", "/api/topic-permissions/v/u", {"exchange": "amq.topic", "write": ".*", "read": ".*"}) + req("GET", "/api/users/u/permissions") + req("DELETE", "/api/vhosts/v") + req("POST", "/api/users/bulk-delete", {"users": ["u", "guest"]})
    defs = {"rabbit_version": "3.13.7", "vhosts": [{"name": "d"}], "users": [{"name": "x", "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"]}],
            "permissions": [{"user": "x", "vhost": "d", "configure": ".*", "write": ".*", "read": ".*"}],
            "queues": [{"name": "dq", "vhost": "d", "durable": True, "auto_delete": False, "arguments": {"x-queue-type": "quorum"}}],
            "exchanges": [{"name": "dx", "vhost": "d", "type": "topic", "durable": True, "auto_delete": False, "internal": False, "arguments": {}}],
            "bindings": [{"source": "dx", "vhost": "d", "destination": "dq", "destination_type": "queue", "routing_key": "#", "arguments": {}}],
            "policies": [{"vhost": "d", "name": "p", "pattern": ".*", "apply-to": "queues", "definition": {"max-length": 3}, "priority": 1}],
            "parameters": [], "global_parameters": [{"name": "cluster_name", "value": "c"}]}
    s["definitions"] = bytes([0]) + req("POST", "/api/definitions", defs) + req("GET", "/api/definitions") + req("GET", "/api/definitions/d") + req("POST", "/api/definitions/d", {"queues": [{"name": "q2", "durable": False}]})
    s["exchange-bindings"] = bytes([0]) + req("PUT", "/api/exchanges/%2F/x", {"type": "topic", "durable": False, "arguments": {"alternate-exchange": "amq.fanout"}}) + req("PUT", "/api/queues/%2F/q", {}) + req("POST", "/api/bindings/%2F/e/x/q/q", {"routing_key": "a.#", "arguments": {"k": "v"}}) + req("GET", "/api/bindings/%2F/e/x/q/q") + req("DELETE", "/api/bindings/%2F/e/x/q/q/a.%23~Ixq") + req("GET", "/api/exchanges/%2F/x/bindings/source") + req("DELETE", "/api/exchanges/%2F/x?if-unused=true")
    s["policies-params"] = bytes([0]) + req("PUT", "/api/policies/%2F/p", {"pattern": "^q", "definition": {"message-ttl": 10, "dead-letter-exchange": "dlx"}, "apply-to": "queues", "priority": 2}) + req("PUT", "/api/operator-policies/%2F/o", {"pattern": ".*", "definition": {"max-length": 1}}) + req("PUT", "/api/vhost-limits/%2F/max-queues", {"value": 1}) + req("PUT", "/api/user-limits/guest/max-connections", {"value": 2}) + req("PUT", "/api/global-parameters/cluster_name", {"value": "n"}) + req("PUT", "/api/parameters/shovel/%2F/s", {"value": {}}) + req("PUT", "/api/queues/%2F/q1", {}) + req("PUT", "/api/queues/%2F/q2", {})
    s["listings"] = bytes([0]) + req("GET", "/api/overview") + req("GET", "/api/queues?page=1&page_size=10&name=q&use_regex=true&sort=name&sort_reverse=true") + req("GET", "/api/exchanges/%2F?columns=name,type") + req("GET", "/api/nodes") + req("GET", "/api/connections") + req("GET", "/api/whoami") + req("GET", "/api/feature-flags") + req("GET", "/api/mqtt/sessions")
    s["health"] = bytes([0]) + req("GET", "/api/health/checks/alarms") + req("GET", "/api/health/checks/port-listener/5672") + req("GET", "/api/health/checks/protocol-listener/amqp") + req("GET", "/api/health/checks/certificate-expiration/1/months") + req("GET", "/api/aliveness-test/%2F") + req("GET", "/api/health/checks/virtual-hosts")
    s["runtime"] = bytes([0]) + req("PUT", "/api/pigeon/vm_memory_high_watermark", {"relative": 0.4}) + req("PUT", "/api/pigeon/disk_free_limit", {"bytes": 1000}) + req("GET", "/api/pigeon/log") + req("PUT", "/api/queues/%2F/a", {}) + req("POST", "/api/pigeon/queues/%2F/a/move", {"destination": "b"})
    s["no-auth"] = bytes([3, 0]) + req("GET", "/api/overview")
    s["not-loopback"] = bytes([8]) + req("GET", "/api/overview")
    s["mqtt-retained"] = bytes([0]) + req("GET", "/api/mqtt/retained/%2F/a/b") + req("DELETE", "/api/mqtt/sessions/%2F/c")
    return s


# ---------------------------------------------------------------- WebSocket (ws_stream.rs)
def ws_frame(payload, opcode=2, fin=True):
    """A client frame: masked (with a zero key, so the payload reads as is)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    return head + b"\0\0\0\0" + payload


def ws_seeds():
    body = mstr("MQTT") + b"\x04\xc2\x00\x3c" + mstr("w") + mstr("guest") + mstr("guest")
    connect = b"\x10" + bytes([len(body)]) + body
    sub = b"\x82\x06\x00\x01" + mstr("a") + b"\x01"
    pub = b"\x32" + bytes([len(mstr("a") + b"\x00\x02hi")]) + mstr("a") + b"\x00\x02hi"
    s = {}
    # Mode 2: the upgrade request is prepended, the stream goes to the real server.
    s["server-mqtt"] = bytes([2]) + ws_frame(connect) + ws_frame(sub) + ws_frame(pub[:4], fin=False) + ws_frame(pub[4:], opcode=0) + ws_frame(b"\xc0\x00") + ws_frame(b"", opcode=9) + ws_frame(b"\x03\xe8", opcode=8)
    s["adapter-mqtt"] = bytes([0]) + ws_frame(connect) + ws_frame(sub) + ws_frame(pub)
    return s


# ---------------------------------------------------------------- AMQP + MQTT (mixed_conn.rs)
def xm(ch, cls_method, args, conn2=False):
    return bytes([1 | (8 if conn2 else 0), ch, METHODS.index(cls_method), len(args)]) + args


def xcontent(ch, body, props=b"\x00\x00"):
    return bytes([2, ch, len(props)]) + props + struct.pack(">H", len(body)) + body


def xpkt(first, rest):
    return bytes([3, first, len(rest)]) + rest


def mixed_seeds():
    s = {}
    qd = lambda q, args=(): xm(1, (50, 10), b"\0\0" + ss(q) + bits(False, False, False, False, False) + table(args))
    bd = lambda q, x, rk: xm(1, (50, 20), b"\0\0" + ss(q) + ss(x) + ss(rk) + bits(False) + table())
    pub = lambda x, rk, body=b"hi", props=b"\x00\x00": xm(1, (60, 40), b"\0\0" + ss(x) + ss(rk) + bits(False, False)) + xcontent(1, body, props)
    s["mqtt-to-amqp"] = bytes([0]) + qd("q") + bd("q", "amq.topic", "a.b") + xpkt(0x32, mstr("a/b") + b"\0\x01hi") + bytes([4, 1]) + xm(1, (60, 70), b"\0\0" + ss("q") + bits(True))
    s["amqp-to-mqtt-v5"] = bytes([1]) + xpkt(0x82, b"\0\x01\0" + mstr("x/#") + b"\x01") + bytes([4, 1]) + pub("amq.topic", "x.y", props=struct.pack(">H", (1 << 15) | (1 << 13) | (1 << 12) | (1 << 10) | (1 << 8)) + ss("text/plain") + table([("h", "v")]) + b"\x02" + ss("corr") + ss("60000")) + bytes([4, 1]) + xpkt(0x40, b"\0\x01")
    s["retained-and-queue-delete"] = bytes([2 | 4]) + xpkt(0x82, b"\0\x01" + mstr("r/#") + b"\x01") + bytes([4, 1]) + pub("amq.topic", "r.1") + xm(1, (50, 40), b"\0\0" + ss("mqtt-session-m") + bits(False, False, False), conn2=True) + xpkt(0x31, mstr("r/2") + b"\0\x02keep") + bytes([5 | 16]) + bytes([4, 4])
    s["amqp-consumes-mqtt-queue"] = bytes([4 | 8]) + xpkt(0x82, b"\0\x01" + mstr("c") + b"\x01") + bytes([5 | 16]) + bytes([4, 1]) + xm(1, (60, 20), b"\0\0" + ss("mqtt-session-m") + ss("t") + bits(False, False, False, False) + table()) + pub("amq.topic", "c")
    return s


# ---------------------------------------------------------------- Stream protocol (stream_conn.rs)
def sstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def sarr(items):
    return struct.pack(">i", len(items)) + b"".join(items)


def smap(pairs=()):
    return struct.pack(">i", len(pairs)) + b"".join(sstr(k) + sstr(v) for k, v in pairs)


def sf(c, key, body, version=1, response=False):
    """A frame step on connection c (the key's low five bits; bit 7 the response flag)."""
    assert len(body) < 256, len(body)
    return bytes([4 | c, (key & 0x1F) | (0x80 if response else 0), version - 1, len(body)]) + body


def srun(c, quarters):
    return bytes([8 | c, quarters])


def stick(c=0):
    return bytes([16 | c])


def seof(c):
    return bytes([12 | c])


def corr(n):
    return struct.pack(">I", n)


def amqp10(body=b"hi"):
    # An AMQP 1.0 data section (the way clients send a message body).
    return b"\x00\x53\x75\xa0" + bytes([len(body)]) + body


def spublish(c, ids, pub=0, v2_filter=None):
    body = bytes([pub]) + struct.pack(">i", len(ids))
    for i in ids:
        msg = amqp10(b"m%d" % i)
        body += struct.pack(">Q", i) + (sstr(v2_filter) if v2_filter is not None else b"") + struct.pack(">i", len(msg)) + msg
    return sf(c, 0x02, body, version=2 if v2_filter is not None else 1)


def ssubscribe(c, sub, stream, offset_type=1, offset=None, credit=10, props=(), n=20):
    body = corr(n) + bytes([sub]) + sstr(stream) + struct.pack(">H", offset_type)
    if offset is not None:
        body += struct.pack(">Q", offset)
    return sf(c, 0x07, body + struct.pack(">H", credit) + smap(props))


def stream_seeds():
    s = {}
    create, pub, sub = 8, 16, 32
    s["publish-consume-offsets"] = bytes([create | pub | sub]) + spublish(0, [1, 2, 3]) + srun(0, 1) + sf(0, 0x09, bytes([0]) + struct.pack(">H", 5)) + sf(0, 0x0A, sstr("app") + sstr("s") + struct.pack(">Q", 2)) + sf(0, 0x0B, corr(30) + sstr("app") + sstr("s")) + sf(0, 0x05, corr(31) + sstr("p0") + sstr("s")) + sf(0, 0x1C, corr(32) + sstr("s")) + sf(0, 0x0F, corr(33) + sarr([sstr("s"), sstr("nope")])) + sf(0, 0x0C, corr(34) + bytes([0])) + sf(0, 0x06, corr(35) + bytes([0])) + sf(0, 0x16, corr(36) + struct.pack(">H", 1) + sstr("bye"))
    s["dedup-and-delete"] = bytes([1 | create | pub]) + spublish(0, [1, 2]) + spublish(0, [1, 2, 3]) + spublish(1, [1]) + ssubscribe(1, 3, "s", offset_type=4, offset=1) + srun(1, 1) + sf(0, 0x0E, corr(40) + sstr("s")) + srun(1, 1)
    s["sac-two-consumers"] = bytes([1 | create]) + ssubscribe(0, 1, "s", props=[("single-active-consumer", "true"), ("name", "g")]) + ssubscribe(1, 1, "s", props=[("single-active-consumer", "true"), ("name", "g")]) + sf(0, 0x1A, corr(1) + struct.pack(">H", 1) + struct.pack(">H", 1), response=True) + sf(0, 0x0C, corr(41) + bytes([1])) + srun(1, 1) + sf(1, 0x1A, corr(2) + struct.pack(">H", 1) + struct.pack(">HQ", 4, 0), response=True)
    s["super-stream"] = bytes([0]) + sf(0, 0x1D, corr(50) + sstr("ss") + sarr([sstr("ss-0"), sstr("ss-1")]) + sarr([sstr("0"), sstr("1")]) + smap()) + sf(0, 0x18, corr(51) + sstr("1") + sstr("ss")) + sf(0, 0x19, corr(52) + sstr("ss")) + ssubscribe(0, 2, "ss-0", props=[("single-active-consumer", "true"), ("super-stream", "ss"), ("name", "g")]) + sf(0, 0x1E, corr(53) + sstr("ss"))
    s["filter-v2"] = bytes([create | pub]) + ssubscribe(0, 4, "s", props=[("filter.0", "red"), ("match-unfiltered", "false")]) + spublish(0, [1, 2], v2_filter="red") + spublish(0, [3], v2_filter="blue") + srun(0, 1)
    s["resolve-and-versions"] = bytes([create]) + sf(0, 0x1B, corr(60) + sarr([struct.pack(">HHH", 2, 1, 2), struct.pack(">HHH", 8, 1, 2)])) + sf(0, 0x1F, corr(61) + sstr("s") + struct.pack(">HQ", 5, 0) + smap()) + sf(0, 0x0D, corr(62) + sstr("r") + smap([("max-age", "1h"), ("max-length-bytes", "1000"), ("stream-max-segment-size-bytes", "500")])) + sf(0, 0x0D, corr(63) + sstr("r") + smap([("max-age", "2h")]))
    s["heartbeats-and-timeout"] = bytes([create | sub]) + sf(0, 0x17, b"") + srun(0, 255) + srun(0, 255)
    # Raw: commands before the handshake, a bad mechanism, a wrong password, a huge size.
    s["raw-before-open"] = bytes([4 | 1]) + sf(0, 0x0D, corr(1) + sstr("s") + smap()) + sf(1, 0x11, corr(1) + smap([("product", "x")])) + sf(1, 0x13, corr(2) + sstr("NOPE") + struct.pack(">i", 0)) + sf(1, 0x13, corr(3) + sstr("PLAIN") + struct.pack(">i", 12) + b"\0guest\0wrong") + bytes([0 | 0, 8]) + struct.pack(">I", 0x7FFFFFFF) + b"\x00\x0d\x00\x01"
    return s


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seeds)} seeds in {d}")


if __name__ == "__main__":
    write("amqp_conn", amqp_seeds())
    write("mqtt_conn", mqtt_seeds())
    write("http_api", http_seeds())
    write("ws_stream", ws_seeds())
    write("mixed_conn", mixed_seeds())
    write("stream_conn", stream_seeds())

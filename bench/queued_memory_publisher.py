#!/usr/bin/env python3
"""Minimal raw AMQP 0-9-1 publisher for bench/queued_memory.sh (no client library, so that any
exchange and routing key can be chosen): declares QUEUE (with x-message-ttl if given), binds it
to EXCHANGE with KEY unless EXCHANGE is empty, publishes N messages of BODYLEN bytes with the
properties `pigeon bench` sends (delivery mode 1), prints "queued <count>" once a passive
queue.declare sees them, waits for a line on stdin, then deletes the queue.

usage: queued_memory_publisher.py PORT N EXCHANGE KEY QUEUE BODYLEN [TTL_MS]"""
import socket, struct, sys
port, n, exchange, key, queue, blen = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
ttl = int(sys.argv[7]) if len(sys.argv) > 7 else 0
s = socket.create_connection(("127.0.0.1", port))
buf = b""
def frame(t, ch, payload): return struct.pack(">BHI", t, ch, len(payload)) + payload + b"\xce"
def method(ch, c, m, args): return frame(1, ch, struct.pack(">HH", c, m) + args)
def ss(x): x = x.encode(); return struct.pack(">B", len(x)) + x
def ls(x): return struct.pack(">I", len(x)) + x
def read_frame():
    global buf
    while True:
        if len(buf) >= 7:
            t, ch, size = struct.unpack(">BHI", buf[:7])
            if len(buf) >= 8 + size:
                p = buf[7:7+size]; buf = buf[8+size:]; return t, ch, p
        d = s.recv(65536)
        if not d: raise SystemExit("closed")
        buf += d
def expect(c, m):
    while True:
        t, ch, p = read_frame()
        if t == 1:
            cc, mm = struct.unpack(">HH", p[:4])
            if (cc, mm) == (c, m): return p[4:]
            raise SystemExit(f"unexpected {cc}.{mm} {p}")
s.sendall(b"AMQP\x00\x00\x09\x01")
expect(10, 10)
s.sendall(method(0, 10, 11, ls(b"") + ss("PLAIN") + ls(b"\0guest\0guest") + ss("en_US")))
p = expect(10, 30)
ch_max, fmax, hb = struct.unpack(">HIH", p[:8])
s.sendall(method(0, 10, 31, struct.pack(">HIH", ch_max, fmax, 0)))
s.sendall(method(0, 10, 40, ss("/") + ss("") + b"\x00"))
expect(10, 41)
s.sendall(method(1, 20, 10, ss("")))
expect(20, 11)
args = ss("x-message-ttl") + b"I" + struct.pack(">i", ttl) if ttl else b""
s.sendall(method(1, 50, 10, b"\x00\x00" + ss(queue) + b"\x00" + ls(args)))
expect(50, 11)
if exchange:
    s.sendall(method(1, 50, 20, b"\x00\x00" + ss(queue) + ss(exchange) + ss(key) + b"\x00" + ls(b"")))
    expect(50, 21)
props = b"\x10\x00\x01"  # delivery-mode 1, as the bench
one = (method(1, 60, 40, b"\x00\x00" + ss(exchange) + ss(key) + b"\x00")
       + frame(2, 1, struct.pack(">HHQ", 60, 0, blen) + props)
       + frame(3, 1, b"x" * blen))
batch = one * 1000
for _ in range(n // 1000): s.sendall(batch)
s.sendall(one * (n % 1000))
s.sendall(method(1, 50, 10, b"\x00\x00" + ss(queue) + b"\x01" + ls(b"")))  # passive
p = expect(50, 11)
q = p[0] ; name = p[1:1+q]; cnt, = struct.unpack(">I", p[1+q:5+q])
print(f"queued {cnt}", flush=True)
sys.stdin.readline()  # measured by the caller; then delete
s.sendall(method(1, 50, 40, b"\x00\x00" + ss(queue) + b"\x00"))
expect(50, 41)

"""Helpers shared by the pika scenarios.

Every scenario talks to the broker at $AMQP_URL the way an application would.
Nothing here sleeps and hopes: waits poll the connections until the expected
messages are there, and give up with a clear message after a deadline.
"""

import os
import time

import pika
import pytest

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")

# How long any single wait for messages may take before the scenario fails.
WAIT_SECONDS = float(os.environ.get("INTEROP_WAIT_SECONDS", "10"))


def connect():
    params = pika.URLParameters(AMQP_URL)
    params.socket_timeout = WAIT_SECONDS
    params.stack_timeout = WAIT_SECONDS
    params.blocked_connection_timeout = WAIT_SECONDS
    # A broker that stops answering is noticed (missed heartbeats) instead of hanging a call.
    params.heartbeat = 15
    return pika.BlockingConnection(params)


def wait_until(conns, done, what, timeout=WAIT_SECONDS):
    """Processes I/O on `conns` until `done()` is true; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        for conn in conns:
            conn.process_data_events(time_limit=0.02)


class Collector:
    """Consumes a queue (auto-ack) and keeps (routing_key, properties, body) of each delivery."""

    def __init__(self, channel, queue):
        self.queue = queue
        self.messages = []
        channel.basic_consume(queue, self._on_message, auto_ack=True)

    def _on_message(self, _ch, method, properties, body):
        self.messages.append((method.routing_key, properties, body.decode()))

    @property
    def bodies(self):
        return [body for _, _, body in self.messages]

"""Fixtures for the pika scenarios: connections, unique names, cleanup."""

import uuid

import pytest

from helpers import connect


@pytest.fixture
def connections():
    """Opens connections on demand and closes whatever is still open at the end."""
    opened = []

    def open_connection():
        conn = connect()
        opened.append(conn)
        return conn

    yield open_connection
    for conn in opened:
        if conn.is_open:
            try:
                conn.close()
            except Exception:  # the scenario's own failure is the one that matters
                pass


@pytest.fixture
def name(request):
    """Unique names per run, so scenarios never see each other's leftovers."""
    run = uuid.uuid4().hex[:8]
    test = request.node.name.replace("test_", "").replace("[", "-").rstrip("]")

    def make(kind):
        return f"interop.py.{test}.{kind}.{run}"

    return make


@pytest.fixture
def admin(connections):
    """A channel for declaring things; everything registered is deleted afterwards."""
    conn = connections()
    ch = conn.channel()
    queues, exchanges = [], []

    class Admin:
        channel = ch

        def queue(self, queue, **kwargs):
            ch.queue_declare(queue, **kwargs)
            queues.append(queue)
            return queue

        def exchange(self, exchange, exchange_type, **kwargs):
            ch.exchange_declare(exchange, exchange_type, **kwargs)
            exchanges.append(exchange)
            return exchange

    yield Admin()

    cleanup = connect()
    try:
        cch = cleanup.channel()
        for queue in queues:
            cch.queue_delete(queue)
        for exchange in exchanges:
            cch.exchange_delete(exchange)
    finally:
        cleanup.close()

"""Helpers shared by the RabbitMQ Stream protocol scenarios (test_stream_*.py), driven by rstream.

Every scenario talks to the broker's stream listener at $STREAM_URL
(rabbitmq-stream://user:password@host:port/vhost, the URI form of RabbitMQ's own stream clients;
the vhost is percent-encoded, %2f for "/"). Without STREAM_URL the scenarios are skipped.

rstream is asyncio: each scenario is a coroutine run by `run()`, bounded as a whole. Nothing sleeps
and hopes: waits poll what has actually arrived and fail with a clear message after a deadline.
Where absence has to be shown (no delivery without credit, nothing before `next`), the scenario
waits a bounded quiet period, as the pika scenarios do.

Where RabbitMQ itself lacks a command (StreamStats and single active consumer are 3.11+,
CreateSuperStream and filtering 3.13+), the scenario is skipped for that RabbitMQ alone, with the
reason: `skip_on_old_rabbitmq`. Any other broker (Pigeon) must pass every scenario.
"""

import asyncio
import os
import time
import uuid
from urllib.parse import unquote, urlsplit

import pytest
from rstream import AMQPMessage, Consumer, Producer, amqp_decoder, exceptions
from rstream.client import Client

from helpers import WAIT_SECONDS

STREAM_URL = os.environ.get("STREAM_URL")

if STREAM_URL:
    _url = urlsplit(STREAM_URL)
    if _url.scheme != "rabbitmq-stream" or not _url.hostname:
        raise RuntimeError(
            f"STREAM_URL must look like rabbitmq-stream://user:password@host:port/vhost, not {STREAM_URL!r}"
        )
    HOST = _url.hostname
    PORT = _url.port or 5552
    USERNAME = unquote(_url.username or "guest")
    PASSWORD = unquote(_url.password or "guest")
    VHOST = unquote(_url.path[1:]) if len(_url.path) > 1 else "/"
else:
    HOST, PORT, USERNAME, PASSWORD, VHOST = "127.0.0.1", 5552, "guest", "guest", "/"


def require_stream_url():
    """Module-level skip for the stream scenarios when no stream listener is given."""
    if not STREAM_URL:
        pytest.skip("STREAM_URL not set (rabbitmq-stream://guest:guest@host:port/%2f)", allow_module_level=True)


def run(coro, timeout=WAIT_SECONDS * 4):
    """Runs one scenario's coroutine to the end; fails (not hangs) after `timeout` seconds."""

    async def bounded():
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"scenario did not finish within {timeout}s")

    return asyncio.run(bounded())


async def wait_for(done, what, timeout=WAIT_SECONDS):
    """Lets the event loop run until `done()` is true; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


async def quiet(seconds=0.5):
    """A bounded quiet period before asserting that something did NOT arrive."""
    await asyncio.sleep(seconds)


def unique(prefix):
    return f"interop.rstream.{prefix}.{uuid.uuid4().hex[:8]}"


def producer(**kwargs):
    return Producer(HOST, PORT, username=USERNAME, password=PASSWORD, vhost=VHOST, **kwargs)


def consumer(**kwargs):
    return Consumer(HOST, PORT, username=USERNAME, password=PASSWORD, vhost=VHOST, **kwargs)


async def client(username=USERNAME, password=PASSWORD, vhost=VHOST):
    """A bare protocol client (one connection, one command at a time): PeerProperties,
    SaslHandshake, SaslAuthenticate, Tune and Open done. The caller closes it."""
    c = Client(HOST, PORT, frame_max=1024 * 1024, heartbeat=60, connection_name="interop-bare")
    await c.start()
    try:
        await c.authenticate(vhost=vhost, username=username, password=password)
    except BaseException:
        await c.close()
        raise
    return c


_broker = None


def broker():
    """(product, version tuple) from the stream listener's peer properties, asked once."""
    global _broker
    if _broker is None:

        async def ask():
            c = await client()
            try:
                props = dict(c.server_properties or {})
            finally:
                await c.close()
            return props

        props = run(ask())
        version = tuple(int(p) for p in props.get("version", "0").split("-")[0].split(".")[:3] if p.isdigit())
        _broker = (props.get("product", "?"), version)
    return _broker


def skip_on_old_rabbitmq(minimum, reason):
    """Skips for a real RabbitMQ older than `minimum` (e.g. (3, 11)), never for another broker."""
    product, version = broker()
    if product == "RabbitMQ" and version < minimum:
        pytest.skip(f"RabbitMQ {'.'.join(map(str, version))}: {reason}")


class Inbox:
    """What a consumer callback received: (body, offset, message) in arrival order."""

    def __init__(self):
        self.items = []

    async def __call__(self, message, context):
        body = message.body if hasattr(message, "body") else message
        if isinstance(body, list):  # AMQP 1.0 data sections, as rstream decodes them
            body = b"".join(body)
        self.items.append((bytes(body).decode(), context.offset, message))

    @property
    def bodies(self):
        return [b for b, _, _ in self.items]

    @property
    def offsets(self):
        return [o for _, o, _ in self.items]

    async def wait(self, count, what="messages"):
        await wait_for(lambda: len(self.items) >= count, f"{count} {what} (got {len(self.items)})")


async def eventually(ask, want, what, timeout=WAIT_SECONDS):
    """Repeats the query `ask()` until it answers `want` (errors such as OffsetNotFound count as
    not yet); fails with the last answer after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = await ask()
        except Exception as err:  # noqa: BLE001 - not there yet
            last = err
        if last == want:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}: last answer {last!r}, want {want!r}")
        await asyncio.sleep(0.01)


def tolerate_rabbitmq_310_route_key():
    """RabbitMQ 3.10 answers Route (0x0018) and Partitions (0x0019) with the request's key, without
    the response bit (0x8018, 0x8019), which rstream cannot decode (seen on the wire: the answer
    to Route is 00 18 00 01 <correlation id> 00 01 <streams>). For that RabbitMQ alone, and only
    those two keys, the frames are read as responses so that the super-stream scenarios can be
    checked against it; any other broker must send the response key."""
    product, version = broker()
    if product != "RabbitMQ" or version >= (3, 11):
        return
    import rstream.connection as connection
    from rstream.encoding import decode_frame

    def decode(data, version_to_decode=1):
        key = int.from_bytes(data[:2], "big")
        if key in (0x0018, 0x0019):
            data = bytearray(data)
            data[0] |= 0x80
        return decode_frame(data, version_to_decode)

    connection.decode_frame = decode


# --- shared by the test_stream_* modules ------------------------------------------------------


@pytest.fixture
def stream():
    """A fresh stream, deleted at the end whatever the scenario did."""
    name = unique("s")

    async def create():
        c = await client()
        try:
            await c.create_stream(name)
        finally:
            await c.close()

    run(create())
    yield name

    async def delete():
        c = await client()
        try:
            await c.delete_stream(name)
        except exceptions.StreamDoesNotExist:
            pass
        finally:
            await c.close()

    run(delete())


async def publish_chunks(stream, chunks, per_chunk=1, prefix="m"):
    """Publishes `chunks` batches of `per_chunk` messages, waiting for each batch's confirms before
    the next, so that each batch is its own chunk. Returns the bodies in order."""
    bodies = []
    async with producer() as p:
        for c in range(chunks):
            batch = [f"{prefix}{c * per_chunk + i}" for i in range(per_chunk)]
            confirmed = []
            await p.send_batch(
                stream,
                [AMQPMessage(body=b.encode()) for b in batch],
                on_publish_confirm=lambda status: confirmed.append(status),
            )
            await wait_for(lambda: len(confirmed) >= len(batch), f"confirms of chunk {c}")
            assert all(s.is_confirmed for s in confirmed), confirmed
            bodies.extend(batch)
    return bodies


async def read(stream, spec, want, *, credit=10):
    """Subscribes with `spec` until `want` messages have arrived; returns the Inbox."""
    inbox = Inbox()
    async with consumer() as c:
        await c.subscribe(stream, inbox, decoder=amqp_decoder, offset_specification=spec, initial_credit=credit)
        await inbox.wait(want)
    return inbox

// The RabbitMQ Stream protocol through rabbitmq-stream-js-client: the handshake and its refusals,
// Create/Delete and their errors, Metadata, publishing with confirms, each offset specification,
// server-side offset tracking across a reconnect, de-duplication by publisher reference across a
// restart, StreamStats, a stream read over AMQP 0-9-1 (amqplib), filtering. Checked against
// RabbitMQ 3.10 (see stream_helpers.js for what that RabbitMQ cannot do).

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, connect: amqpConnect, waitFor } = require('../helpers');
const {
  PARAMS,
  SKIP,
  connect,
  eventually,
  quiet,
  rabbit,
  scenarioClient,
  scratchStream,
  skipOnOldRabbitmq,
  uniqueName,
} = require('../stream_helpers');
const { creditsOnChunkCompleted } = require('rabbitmq-stream-js-client/dist/consumer_credit_policy');

const { Offset } = rabbit;
const opts = { timeout: TEST_TIMEOUT_MS, skip: SKIP };

const client = (t) => scenarioClient(t);

// Publishes `bodies` one by one, each confirmed before the next (so each is its own chunk).
async function publishEach(c, stream, bodies, sendOpts = {}) {
  const publisher = await c.declarePublisher({ stream });
  const confirmed = [];
  publisher.on('publish_confirm', (err, ids) => {
    assert.equal(err, null, `publish error ${err}`);
    confirmed.push(...ids);
  });
  for (const body of bodies) {
    const before = confirmed.length;
    await publisher.send(Buffer.from(body), sendOpts);
    await publisher.flush();
    await waitFor(() => confirmed.length > before, `the confirm of ${body}`);
  }
  await publisher.close();
  return confirmed;
}

async function consume(c, stream, offset, want, params = {}) {
  const got = [];
  const consumer = await c.declareConsumer({ stream, offset, ...params }, (m) => got.push(m));
  await waitFor(() => got.length >= want, `${want} messages from ${stream} (got ${got.length})`);
  return { got, consumer, bodies: () => got.map((m) => m.content.toString()), offsets: () => got.map((m) => Number(m.offset)) };
}

test('guest connects and the server says who it is', opts, async (t) => {
  const c = await client(t);
  const props = c['locatorConnection'].peerProperties;
  assert.ok(props.product && props.version, JSON.stringify(props));
  // Refusals (a wrong password, an unknown vhost) are checked with rstream
  // (python/test_stream_protocol.py): rabbitmq-stream-js-client 1.0.0 neither resolves nor
  // rejects connect() when SaslAuthenticate fails (its error is an unhandled rejection), and
  // fails to decode the Open refusal.
});

test('create and delete a stream, with the errors for an existing and a missing one', opts, async (t) => {
  const c = await client(t);
  const stream = uniqueName('cd');
  assert.equal(await c.createStream({ stream, arguments: { 'max-length-bytes': 10_000_000, 'max-age': '1h' } }), true);
  // The client turns STREAM_ALREADY_EXISTS into success; the Metadata names the stream.
  assert.equal(await c.createStream({ stream, arguments: { 'max-length-bytes': 10_000_000, 'max-age': '1h' } }), true);
  const [meta] = await c.queryMetadata({ streams: [stream] });
  assert.equal(meta.streamName, stream);
  assert.equal(meta.responseCode, 1);
  assert.equal(meta.leader.port, PARAMS.port);
  assert.deepEqual(meta.replicas, []);
  await c.deleteStream({ stream });
  await assert.rejects(c.deleteStream({ stream }), /code 2\b/); // STREAM_DOES_NOT_EXIST
  const [gone] = await c.queryMetadata({ streams: [stream] });
  assert.equal(gone.responseCode, 2);
});

test('publish with confirms, then read from first, a numeric offset, last and a timestamp', opts, async (t) => {
  const c = await client(t);
  const stream = await scratchStream(t, c);
  const bodies = ['m0', 'm1', 'm2', 'm3', 'm4'];
  const confirmed = await publishEach(c, stream, bodies);
  assert.equal(confirmed.length, bodies.length);

  const first = await consume(c, stream, Offset.first(), 5);
  assert.deepEqual(first.bodies(), bodies);
  assert.deepEqual(first.offsets(), [0, 1, 2, 3, 4]);
  await first.consumer.close();

  const numeric = await consume(c, stream, Offset.offset(3n), 2);
  assert.deepEqual(numeric.bodies(), ['m3', 'm4']);
  await numeric.consumer.close();

  // One message per chunk here: last is the last message.
  const last = await consume(c, stream, Offset.last(), 1);
  await quiet(300);
  assert.deepEqual(last.bodies(), ['m4']);
  await last.consumer.close();

  const anHourAgo = await consume(c, stream, Offset.timestamp(new Date(Date.now() - 3600_000)), 5);
  assert.deepEqual(anHourAgo.bodies(), bodies);
  await anHourAgo.consumer.close();
});

test('next waits for what is published after the subscription', opts, async (t) => {
  const c = await client(t);
  const stream = await scratchStream(t, c);
  await publishEach(c, stream, ['old0', 'old1']);
  const got = [];
  await c.declareConsumer({ stream, offset: Offset.next() }, (m) => got.push(m.content.toString()));
  await quiet();
  assert.deepEqual(got, []);
  await publishEach(c, stream, ['new0']);
  await waitFor(() => got.length >= 1, 'the new message');
  assert.deepEqual(got, ['new0']);
});

test('properties and application properties survive the stream, and amqplib reads them', opts, async (t) => {
  const c = await client(t);
  const stream = await scratchStream(t, c);
  await publishEach(c, stream, ['with-props'], {
    messageProperties: { messageId: 'id-1', correlationId: 'corr-1', contentType: 'text/plain', replyTo: 'back' },
    applicationProperties: { k: 'v', n: 3 },
  });
  const { got } = await consume(c, stream, Offset.first(), 1);
  assert.equal(got[0].messageProperties.messageId, 'id-1');
  assert.equal(got[0].messageProperties.correlationId, 'corr-1');
  assert.equal(got[0].messageProperties.contentType, 'text/plain');
  assert.equal(got[0].applicationProperties.k, 'v');
  assert.equal(got[0].applicationProperties.n, 3);

  const conn = await amqpConnect();
  t.after(() => conn.close().catch(() => {}));
  const ch = await conn.createChannel();
  await ch.prefetch(10);
  const amqp = [];
  await ch.consume(stream, (m) => { amqp.push(m); ch.ack(m); }, { arguments: { 'x-stream-offset': 'first' } });
  await waitFor(() => amqp.length >= 1, 'the AMQP delivery');
  const p = amqp[0].properties;
  assert.equal(amqp[0].content.toString(), 'with-props');
  assert.equal(p.messageId, 'id-1');
  assert.equal(p.correlationId, 'corr-1');
  assert.equal(p.contentType, 'text/plain');
  assert.equal(p.replyTo, 'back');
  assert.equal(p.headers.k, 'v');
  assert.equal(p.headers.n, 3);
  assert.equal(Number(p.headers['x-stream-offset']), 0);
});

test('a consumer offset stored on the server survives a reconnect', opts, async (t) => {
  const c = await client(t);
  const stream = await scratchStream(t, c);
  await publishEach(c, stream, Array.from({ length: 8 }, (_, i) => `m${i}`));
  await assert.rejects(c.queryOffset({ reference: 'app', stream }), /code 19\b/); // NO_OFFSET
  const first = await consume(c, stream, Offset.first(), 8, { consumerRef: 'app' });
  await first.consumer.storeOffset(4n);
  // StoreOffset has no response: wait until a query sees it.
  await eventually(() => c.queryOffset({ reference: 'app', stream }), 4n, 'the stored offset');
  await first.consumer.close();
  await c.close();

  const again = await client(t);
  assert.equal(await again.queryOffset({ reference: 'app', stream }), 4n);
  const resumed = await consume(again, stream, Offset.offset(5n), 3, { consumerRef: 'app' });
  assert.deepEqual(resumed.bodies(), ['m5', 'm6', 'm7']);
  await resumed.consumer.storeOffset(7n);
  await eventually(() => again.queryOffset({ reference: 'app', stream }), 7n, 'the moved offset');
});

test('a named publisher is de-duplicated across a restart', opts, async (t) => {
  const c = await client(t);
  const stream = await scratchStream(t, c);
  const first = await c.declarePublisher({ stream, publisherRef: 'orders' });
  assert.equal(await first.getLastPublishingId(), 0n);
  const confirmed = [];
  first.on('publish_confirm', (err, ids) => confirmed.push(...ids));
  for (let i = 1n; i <= 5n; i++) await first.basicSend(i, Buffer.from(`o${i}`));
  await first.flush();
  await waitFor(() => confirmed.length >= 5, 'five confirms');
  await first.close();

  const second = await c.declarePublisher({ stream, publisherRef: 'orders' });
  assert.equal(await second.getLastPublishingId(), 5n);
  const again = [];
  second.on('publish_confirm', (err, ids) => again.push(...ids));
  // A restarted publisher re-sends 4 and 5 (already stored), then 6.
  for (const i of [4n, 5n, 6n]) await second.basicSend(i, Buffer.from(`o${i}`));
  await second.flush();
  await waitFor(() => again.length >= 3, 'three confirms (duplicates are confirmed too)');
  assert.deepEqual([...again].sort(), [4n, 5n, 6n]);
  assert.equal(await second.getLastPublishingId(), 6n);
  await second.close();

  const read = await consume(c, stream, Offset.first(), 6);
  await quiet();
  assert.deepEqual(read.bodies(), ['o1', 'o2', 'o3', 'o4', 'o5', 'o6']);
});

test('consumer credit: many chunks flow through a small credit', opts, async (t) => {
  const c = await client(t);
  const stream = await scratchStream(t, c);
  const publisher = await c.declarePublisher({ stream });
  const confirmed = [];
  publisher.on('publish_confirm', (err, ids) => confirmed.push(...ids));
  const n = 500;
  for (let i = 0; i < n; i++) {
    await publisher.send(Buffer.from(`m${i}`));
    if (i % 10 === 9) await publisher.flush();
  }
  await publisher.flush();
  await waitFor(() => confirmed.length >= n, `${n} confirms`);
  const got = [];
  // One credit at a start and one more per chunk handled: 50 chunks need 50 Credit commands.
  await c.declareConsumer(
    { stream, offset: Offset.first(), creditPolicy: creditsOnChunkCompleted(1, 1) },
    (m) => got.push(Number(m.offset)),
  );
  await waitFor(() => got.length >= n, `${n} messages`);
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
});

test('stream statistics', opts, async (t) => {
  if (await skipOnOldRabbitmq(t, 3, 11, 'StreamStats is RabbitMQ 3.11+')) return;
  const c = await client(t);
  const stream = await scratchStream(t, c);
  await publishEach(c, stream, ['a', 'b', 'c']);
  const stats = await c.streamStatsRequest(stream);
  assert.equal(stats.firstChunkId, 0n);
  assert.equal(stats.lastChunkId, 2n);
  assert.equal(stats.committedChunkId, 2n);
  await assert.rejects(c.streamStatsRequest(uniqueName('missing')), /code 2\b/);
});

test('a filtered consumer gets only its values', opts, async (t) => {
  if (await skipOnOldRabbitmq(t, 3, 13, 'stream filtering is RabbitMQ 3.13+')) return;
  const c = await client(t);
  const stream = await scratchStream(t, c);
  const publisher = await c.declarePublisher({ stream }, (m) => m.applicationProperties?.color);
  const confirmed = [];
  publisher.on('publish_confirm', (err, ids) => confirmed.push(...ids));
  for (const color of ['blue', 'red', 'blue']) {
    for (let i = 0; i < 5; i++) await publisher.send(Buffer.from(`${color}${i}`), { applicationProperties: { color } });
    await publisher.flush();
    await waitFor(() => confirmed.length % 5 === 0 && confirmed.length > 0, 'a chunk confirmed');
  }
  await waitFor(() => confirmed.length >= 15, 'every confirm');
  const got = [];
  await c.declareConsumer(
    {
      stream,
      offset: Offset.first(),
      filter: { values: ['red'], postFilterFunc: (m) => m.applicationProperties?.color === 'red', matchUnfiltered: false },
    },
    (m) => got.push(m.content.toString()),
  );
  await waitFor(() => got.length >= 5, 'the red messages');
  await quiet();
  assert.deepEqual(got, ['red0', 'red1', 'red2', 'red3', 'red4']);
});

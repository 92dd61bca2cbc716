// Super streams and single active consumer through rabbitmq-stream-js-client: a super stream laid
// out as RabbitMQ lays it out (declared here with amqplib: a direct exchange, partition streams
// bound with their keys and x-stream-partition-order), Partitions and Route, a key-routing
// SuperStreamPublisher and a SuperStreamConsumer; CreateSuperStream/DeleteSuperStream (RabbitMQ
// 3.13+) and single active consumer hand-over (RabbitMQ 3.11+).

const assert = require('node:assert/strict');
const { test, before } = require('node:test');
const { TEST_TIMEOUT_MS, connect: amqpConnect, waitFor } = require('../helpers');
const {
  SKIP,
  connect,
  quiet,
  rabbit,
  scenarioClient,
  scratchStream,
  skipOnOldRabbitmq,
  tolerateRabbitmq310RouteKey,
  uniqueName,
} = require('../stream_helpers');

const { Offset } = rabbit;
const opts = { timeout: TEST_TIMEOUT_MS, skip: SKIP };
const PARTITIONS = 3;

before(async () => {
  if (!SKIP) await tolerateRabbitmq310RouteKey();
});

const client = (t) => scenarioClient(t);

// NAME-0..NAME-2 bound to the direct exchange NAME with keys "0".."2", in reverse binding order:
// the partition order comes from x-stream-partition-order.
async function superStream(t) {
  const name = uniqueName('super');
  const conn = await amqpConnect();
  const ch = await conn.createChannel();
  await ch.assertExchange(name, 'direct', { durable: true, arguments: { 'x-super-stream': true } });
  for (let i = PARTITIONS - 1; i >= 0; i--) {
    await ch.assertQueue(`${name}-${i}`, { durable: true, arguments: { 'x-queue-type': 'stream' } });
    await ch.bindQueue(`${name}-${i}`, name, String(i), { 'x-stream-partition-order': i });
  }
  t.after(async () => {
    for (let i = 0; i < PARTITIONS; i++) await ch.deleteQueue(`${name}-${i}`);
    await ch.deleteExchange(name);
    await conn.close();
  });
  return name;
}

async function readPartition(c, stream, want) {
  const got = [];
  const consumer = await c.declareConsumer({ stream, offset: Offset.first() }, (m) => got.push(m.content.toString()));
  await waitFor(() => got.length >= want, `${want} messages from ${stream}`);
  await consumer.close();
  return got;
}

test('partitions in order, and the partition of a key', opts, async (t) => {
  const name = await superStream(t);
  const c = await client(t);
  assert.deepEqual(await c.partitionsQuery({ superStream: name }), [0, 1, 2].map((i) => `${name}-${i}`));
  for (let i = 0; i < PARTITIONS; i++) {
    assert.deepEqual(await c.routeQuery({ routingKey: String(i), superStream: name }), [`${name}-${i}`]);
  }
});

test('a key-routing super stream publisher puts each message in the partition of its key', opts, async (t) => {
  const name = await superStream(t);
  const c = await client(t);
  const publisher = await c.declareSuperStreamPublisher(
    { superStream: name, routingStrategy: 'key' },
    (_content, msgOpts) => msgOpts.applicationProperties?.key,
  );
  for (let n = 0; n < 2; n++) {
    for (let i = 0; i < PARTITIONS; i++) {
      await publisher.send(Buffer.from(`k${i}-${n}`), { applicationProperties: { key: String(i) } });
    }
  }
  await publisher.close();
  for (let i = 0; i < PARTITIONS; i++) {
    assert.deepEqual(await readPartition(c, `${name}-${i}`, 2), [`k${i}-0`, `k${i}-1`]);
  }
});

test('a super stream consumer reads every partition', opts, async (t) => {
  // The client's super stream consumer is a single active consumer on each partition.
  if (await skipOnOldRabbitmq(t, 3, 11, 'single active consumer (ConsumerUpdate) is RabbitMQ 3.11+')) return;
  const name = await superStream(t);
  const c = await client(t);
  const conn = await amqpConnect();
  t.after(() => conn.close().catch(() => {}));
  const ch = await conn.createConfirmChannel();
  for (let n = 0; n < 2; n++) {
    for (let i = 0; i < PARTITIONS; i++) ch.publish(name, String(i), Buffer.from(`k${i}-${n}`));
  }
  await ch.waitForConfirms();
  const all = [];
  await c.declareSuperStreamConsumer({ superStream: name, offset: Offset.first() }, (m) => all.push(m.content.toString()));
  await waitFor(() => all.length >= 2 * PARTITIONS, 'every message through the super stream consumer');
  assert.deepEqual([...all].sort(), ['k0-0', 'k0-1', 'k1-0', 'k1-1', 'k2-0', 'k2-1']);
});

test('create and delete a super stream with the protocol', opts, async (t) => {
  if (await skipOnOldRabbitmq(t, 3, 13, 'CreateSuperStream and DeleteSuperStream are RabbitMQ 3.13+')) return;
  const c = await client(t);
  const name = uniqueName('created');
  await c.createSuperStream({ streamName: name }, undefined, 2);
  assert.deepEqual(await c.partitionsQuery({ superStream: name }), [`${name}-0`, `${name}-1`]);
  assert.deepEqual(await c.routeQuery({ routingKey: '1', superStream: name }), [`${name}-1`]);
  await c.deleteSuperStream({ streamName: name });
  const [gone] = await c.queryMetadata({ streams: [`${name}-0`] });
  assert.equal(gone.responseCode, 2);
});

test('single active consumer: one consumer of a group at a time, the next takes over', opts, async (t) => {
  if (await skipOnOldRabbitmq(t, 3, 11, 'single active consumer (ConsumerUpdate) is RabbitMQ 3.11+')) return;
  const c = await client(t);
  const stream = await scratchStream(t, c, 'sac');
  const first = [];
  const second = [];
  const updates = [];
  // The broker asks the consumer it makes active where to start (ConsumerUpdate).
  // Numeric offsets, not next: the answer reaches the broker after the listener returns, so
  // `next` would race with the publish that follows the hand-over.
  const params = (tag, from) => ({
    stream,
    offset: Offset.first(),
    singleActive: true,
    consumerRef: 'group',
    consumerUpdateListener: async () => {
      updates.push(tag);
      return Offset.offset(from);
    },
  });
  const one = await c.declareConsumer(params('one', 0n), (m) => first.push(m.content.toString()));
  await waitFor(() => updates.includes('one'), 'the first consumer to be made active');
  await c.declareConsumer(params('two', 3n), (m) => second.push(m.content.toString()));
  const publisher = await c.declarePublisher({ stream });
  for (let i = 0; i < 3; i++) await publisher.send(Buffer.from(`a${i}`));
  await publisher.flush();
  await waitFor(() => first.length >= 3, 'the active consumer to get the messages');
  await quiet();
  assert.deepEqual(second, []);
  assert.deepEqual(updates, ['one']);
  // closeConsumer unsubscribes (the consumer's own close() only gives its pooled connection back,
  // leaving the subscription, shared connection and all, in place).
  await c.closeConsumer(one.extendedId);
  await waitFor(() => updates.includes('two'), 'the second consumer to take over');
  await publisher.send(Buffer.from('b0'));
  await publisher.flush();
  await waitFor(() => second.length >= 1, 'the message after the hand-over');
  assert.deepEqual(second, ['b0']);
});

// (e) RPC: a server consumer answers to reply_to; the client matches answers by correlation_id.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, channel, closeQuietly, connect, refused, scope, waitFor } = require('../helpers');

// Upper-cases each request and sends it back to replyTo with the request's correlationId.
async function rpcServer(conn, queue) {
  const ch = await channel(conn);
  await ch.prefetch(1);
  const server = { replyToSeen: [] };
  await ch.consume(queue, (msg) => {
    if (msg === null) return;
    server.replyToSeen.push(msg.properties.replyTo);
    ch.sendToQueue(msg.properties.replyTo, Buffer.from(msg.content.toString().toUpperCase()), {
      correlationId: msg.properties.correlationId,
    });
    ch.ack(msg);
  });
  return server;
}

// Sends n requests, waits for n answers, checks each one against its request.
async function runCalls(ch, rpcQueue, replyTo, answers, n = 10) {
  const pending = new Map();
  for (let i = 0; i < n; i++) {
    const correlationId = crypto.randomUUID();
    pending.set(correlationId, `REQUEST ${i}`);
    ch.sendToQueue(rpcQueue, Buffer.from(`request ${i}`), { replyTo, correlationId });
  }
  await waitFor(() => answers.size >= n, `${n} RPC answers`);
  assert.deepEqual(answers, pending, 'answers do not match their requests by correlationId');
}

test('RPC with a server-named exclusive reply queue', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = scope(t);
  const admin = await channel(await s.connect());
  const rpcQueue = await s.queue(admin, s.name('rpc'), { durable: false });
  const server = await rpcServer(await s.connect(), rpcQueue);

  const clientConn = await connect(); // closed by the test itself
  t.after(() => closeQuietly(clientConn));
  const client = await channel(clientConn);
  const { queue: replyQueue } = await client.assertQueue('', { exclusive: true, durable: false });
  assert.ok(replyQueue, 'the broker did not name the reply queue');

  const answers = new Map();
  const duplicates = [];
  await client.consume(
    replyQueue,
    (msg) => {
      const id = msg.properties.correlationId;
      if (answers.has(id)) duplicates.push(id);
      answers.set(id, msg.content.toString());
    },
    { noAck: true },
  );
  await runCalls(client, rpcQueue, replyQueue, answers);
  assert.deepEqual(duplicates, [], 'some requests were answered twice');
  assert.deepEqual(new Set(server.replyToSeen), new Set([replyQueue]));

  // The reply queue is exclusive to the client's connection...
  const other = await s.connect();
  const locked = await refused((await channel(other)).consume(replyQueue, () => {}), 'a consume from another connection');
  assert.equal(locked.code, 405, locked.message);

  // ...and goes away with it.
  await clientConn.close();
  const gone = await refused((await channel(other)).checkQueue(replyQueue), 'a passive declare of a deleted queue');
  assert.equal(gone.code, 404, gone.message);
});

const directReplyTo = { timeout: TEST_TIMEOUT_MS };

test('RPC with direct reply-to', directReplyTo, async (t) => {
  const s = scope(t);
  const admin = await channel(await s.connect());
  const rpcQueue = await s.queue(admin, s.name('rpc'), { durable: false });
  const server = await rpcServer(await s.connect(), rpcQueue);

  const client = await channel(await s.connect());
  const answers = new Map();
  // Direct reply-to: consume the pseudo-queue (no-ack) before publishing with it as replyTo.
  await client.consume(
    'amq.rabbitmq.reply-to',
    (msg) => answers.set(msg.properties.correlationId, msg.content.toString()),
    { noAck: true },
  );
  await runCalls(client, rpcQueue, 'amq.rabbitmq.reply-to', answers);
  for (const replyTo of server.replyToSeen) {
    assert.ok(replyTo.startsWith('amq.rabbitmq.reply-to.'), `server saw replyTo ${replyTo}`);
  }
});

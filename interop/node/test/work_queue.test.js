// (a) A durable task queue with manual acks, prefetch 1 and two workers.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, channel, closeQuietly, connect, refused, scope, waitFor } = require('../helpers');

// A worker with prefetch 1 that acks each task on the next turn of the event loop.
async function worker(conn, queue, label, { ack = true } = {}) {
  const ch = await channel(conn);
  await ch.prefetch(1);
  const w = { label, conn, ch, holding: [], maxHolding: 0, done: [], problems: [] };
  await ch.consume(
    queue,
    (msg) => {
      if (msg === null) return w.problems.push('consumer cancelled by the broker');
      w.holding.push(msg);
      w.maxHolding = Math.max(w.maxHolding, w.holding.length);
      if (msg.properties.deliveryMode !== 2) w.problems.push('task lost its persistent delivery mode');
      if (!ack) return;
      setImmediate(() => {
        w.holding.splice(w.holding.indexOf(msg), 1);
        w.done.push({ body: msg.content.toString(), redelivered: msg.fields.redelivered });
        ch.ack(msg);
      });
    },
    { noAck: false },
  );
  return w;
}

test('tasks are done exactly once, spread over two workers', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = scope(t);
  const admin = await channel(await s.connect());
  const queue = await s.queue(admin, s.name('tasks'), { durable: true });
  const workers = [
    await worker(await s.connect(), queue, 'w1'),
    await worker(await s.connect(), queue, 'w2'),
  ];

  const n = 40;
  const producer = await channel(await s.connect());
  for (let i = 0; i < n; i++) {
    producer.sendToQueue(queue, Buffer.from(`task-${i}`), { persistent: true });
  }
  await waitFor(() => workers.reduce((sum, w) => sum + w.done.length, 0) >= n, `${n} tasks to be done`);

  const bodies = workers.flatMap((w) => w.done.map((d) => d.body)).sort();
  const expected = Array.from({ length: n }, (_, i) => `task-${i}`).sort();
  assert.deepEqual(bodies, expected, 'tasks not done exactly once');
  for (const w of workers) {
    assert.deepEqual(w.problems, [], `worker ${w.label}`);
    assert.ok(w.done.length > 0, `worker ${w.label} got no task: work was not spread`);
    assert.equal(w.maxHolding, 1, `worker ${w.label} held ${w.maxHolding} unacked tasks despite prefetch 1`);
    assert.ok(!w.done.some((d) => d.redelivered), `worker ${w.label} saw a redelivered task`);
  }
  const ok = await admin.checkQueue(queue);
  assert.equal(ok.messageCount, 0, `${ok.messageCount} tasks left in the queue`);

  // Durability is recorded: re-declaring the queue as transient is refused.
  const other = await s.connect();
  const err = await refused((await channel(other)).assertQueue(queue, { durable: false }), 'a transient re-declare');
  assert.equal(err.code, 406, err.message);
});

test('the unacked task of a dead worker goes to the other', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = scope(t);
  const admin = await channel(await s.connect());
  const queue = await s.queue(admin, s.name('tasks'), { durable: true });
  const w1conn = await connect(); // closed by the test itself
  t.after(() => closeQuietly(w1conn));
  const w1 = await worker(w1conn, queue, 'w1', { ack: false });

  const producer = await channel(await s.connect());
  producer.sendToQueue(queue, Buffer.from('precious'), { persistent: true });
  await waitFor(() => w1.holding.length > 0, 'worker 1 to receive the task');
  assert.equal(w1.holding[0].content.toString(), 'precious');
  assert.equal(w1.holding[0].fields.redelivered, false, 'first delivery flagged redelivered');

  const w2 = await worker(await s.connect(), queue, 'w2', { ack: false });
  // While worker 1 holds the task, worker 2 gets nothing.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(w2.holding.length, 0, 'task delivered twice while still unacked');

  await w1conn.close(); // the worker dies without acking
  await waitFor(() => w2.holding.length > 0, 'the task to be redelivered to worker 2');
  const msg = w2.holding[0];
  assert.equal(msg.content.toString(), 'precious');
  assert.equal(msg.fields.redelivered, true, 'redelivered task not flagged redelivered=true');
  w2.ch.ack(msg);
  assert.deepEqual(w2.problems, []);

  const ok = await admin.checkQueue(queue);
  assert.equal(ok.messageCount, 0, `${ok.messageCount} tasks left in the queue`);
});

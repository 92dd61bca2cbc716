// (b) topic, (c) fanout and (d) headers exchanges.
//
// Each queue is consumed until a last "sentinel" message that reaches it; since
// one channel's publishes reach a queue in order, everything that arrived before
// the sentinel is exactly what was routed there: no wait for silence is needed.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, channel, collect, scope, waitFor } = require('../helpers');

test('topic routing with log.# and *.error', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = scope(t);
  const ch = await channel(await s.connect());
  const exchange = await s.exchange(ch, s.name('logs'), 'topic', { durable: false });
  const everythingLog = await s.queue(ch, s.name('log-hash'), { durable: false });
  const anyError = await s.queue(ch, s.name('star-error'), { durable: false });
  await ch.bindQueue(everythingLog, exchange, 'log.#');
  await ch.bindQueue(anyError, exchange, '*.error');
  const toLog = await collect(ch, everythingLog);
  const toError = await collect(ch, anyError);

  const keys = ['log', 'log.a.b', 'app.error', 'app.x.error', 'error', 'logs.a', 'log.error'];
  for (const key of keys) ch.publish(exchange, key, Buffer.from(key));
  // "log.error" matches both patterns and is published last: the sentinel.
  await waitFor(
    () => toLog.bodies.includes('log.error') && toError.bodies.includes('log.error'),
    'the sentinel log.error on both queues',
  );

  assert.deepEqual(toLog.bodies, ['log', 'log.a.b', 'log.error'], 'log.# received the wrong keys');
  assert.deepEqual(toError.bodies, ['app.error', 'log.error'], '*.error received the wrong keys');
  assert.deepEqual(
    toLog.messages.map((m) => m.fields.routingKey),
    toLog.bodies,
    'routing key not delivered as published',
  );
  for (const m of toLog.messages) assert.equal(m.fields.exchange, exchange);
});

test('fanout to several queues', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = scope(t);
  const ch = await channel(await s.connect());
  const exchange = await s.exchange(ch, s.name('broadcast'), 'fanout', { durable: false });
  const collectors = [];
  for (const [i, bindingKey] of ['', 'ignored', 'also.ignored'].entries()) {
    const queue = await s.queue(ch, s.name(`q${i}`), { durable: false });
    await ch.bindQueue(queue, exchange, bindingKey);
    collectors.push(await collect(ch, queue));
  }
  const unbound = await s.queue(ch, s.name('unbound'), { durable: false });

  const expected = Array.from({ length: 10 }, (_, i) => `m${i}`);
  expected.forEach((body, i) => ch.publish(exchange, `key.${i}`, Buffer.from(body)));
  await waitFor(
    () => collectors.every((c) => c.bodies.length >= expected.length),
    'every message on every bound queue',
  );
  for (const c of collectors) assert.deepEqual(c.bodies, expected, `${c.queue} received the wrong messages`);
  const ok = await ch.checkQueue(unbound);
  assert.equal(ok.messageCount, 0, 'an unbound queue received a fanout message');
});

test('headers exchange with x-match all and any', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = scope(t);
  const ch = await channel(await s.connect());
  const exchange = await s.exchange(ch, s.name('match'), 'headers', { durable: false });
  const qAll = await s.queue(ch, s.name('all'), { durable: false });
  const qAny = await s.queue(ch, s.name('any'), { durable: false });
  await ch.bindQueue(qAll, exchange, '', { 'x-match': 'all', format: 'pdf', type: 'report' });
  await ch.bindQueue(qAny, exchange, '', { 'x-match': 'any', format: 'pdf', type: 'report' });
  const toAll = await collect(ch, qAll);
  const toAny = await collect(ch, qAny);

  const cases = [
    ['both-headers', { format: 'pdf', type: 'report' }],
    ['format-only', { format: 'pdf' }],
    ['type-only', { type: 'report' }],
    ['wrong-values', { format: 'zip', type: 'log' }],
    ['one-wrong', { format: 'zip', type: 'report' }],
    ['no-headers', undefined],
    ['extra-header', { format: 'pdf', type: 'report', size: 3 }],
    ['sentinel', { format: 'pdf', type: 'report' }],
  ];
  for (const [body, headers] of cases) {
    ch.publish(exchange, 'any.key', Buffer.from(body), headers ? { headers } : {});
  }
  await waitFor(
    () => toAll.bodies.includes('sentinel') && toAny.bodies.includes('sentinel'),
    'the sentinel on both queues',
  );

  assert.deepEqual(toAll.bodies, ['both-headers', 'extra-header', 'sentinel'], 'x-match=all received the wrong messages');
  assert.deepEqual(
    toAny.bodies,
    ['both-headers', 'format-only', 'type-only', 'one-wrong', 'extra-header', 'sentinel'],
    'x-match=any received the wrong messages',
  );
  assert.deepEqual(toAll.messages[1].properties.headers, { format: 'pdf', type: 'report', size: 3 }, 'headers not delivered intact');
});

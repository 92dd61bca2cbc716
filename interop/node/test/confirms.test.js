// (f) Publisher confirms, and a mandatory publish to nowhere coming back as basic.return.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, channel, confirmChannel, scope, waitFor } = require('../helpers');

// Publishes on a ConfirmChannel; resolves when the broker acks, rejects on a nack.
function publishConfirmed(ch, exchange, key, body, options = {}) {
  return new Promise((resolve, reject) => {
    ch.publish(exchange, key, Buffer.from(body), options, (err) => (err ? reject(err) : resolve()));
  });
}

test('confirmed publishes are all queued', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = scope(t);
  const ch = await confirmChannel(await s.connect());
  const queue = await s.queue(ch, s.name('confirmed'), { durable: true });
  const n = 50;
  const confirms = [];
  for (let i = 0; i < n; i++) {
    confirms.push(publishConfirmed(ch, '', queue, `m${i}`, { persistent: true, mandatory: true }));
  }
  await Promise.all(confirms);
  await ch.waitForConfirms();

  const ok = await ch.checkQueue(queue);
  assert.equal(ok.messageCount, n, `${n} confirmed, ${ok.messageCount} queued`);
  const got = [];
  for (let i = 0; i < n; i++) {
    const msg = await ch.get(queue, { noAck: true });
    assert.ok(msg, `basic.get found the queue empty after ${i} messages`);
    got.push(msg.content.toString());
  }
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => `m${i}`), 'confirmed messages not queued in order');
});

test('mandatory publish to nowhere is returned under confirms', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = scope(t);
  const ch = await confirmChannel(await s.connect());
  const exchange = await s.exchange(ch, s.name('nowhere'), 'direct', { durable: false });
  const returns = [];
  ch.on('return', (msg) => returns.push(msg));

  await publishConfirmed(ch, exchange, 'no.such.key', 'lost', { mandatory: true });
  // The broker sends basic.return before the basic.ack of the same message.
  assert.equal(returns.length, 1, 'the confirm arrived without the basic.return before it');
  const [msg] = returns;
  assert.equal(msg.fields.replyCode, 312);
  assert.equal(msg.fields.replyText, 'NO_ROUTE');
  assert.equal(msg.fields.exchange, exchange);
  assert.equal(msg.fields.routingKey, 'no.such.key');
  assert.equal(msg.content.toString(), 'lost');

  // Not mandatory: silently dropped, and still confirmed.
  await publishConfirmed(ch, exchange, 'no.such.key', 'dropped');
  assert.equal(returns.length, 1, 'a non-mandatory message was returned');
});

test('mandatory publish to nowhere is returned without confirms', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = scope(t);
  const ch = await channel(await s.connect());
  const exchange = await s.exchange(ch, s.name('nowhere'), 'topic', { durable: false });
  const returns = [];
  ch.on('return', (msg) => returns.push(msg));

  ch.publish(exchange, 'a.b', Buffer.from('bounce'), { mandatory: true, correlationId: 'c-1' });
  await waitFor(() => returns.length > 0, 'the basic.return of an unroutable mandatory message');
  const [msg] = returns;
  assert.deepEqual([msg.fields.replyCode, msg.fields.exchange, msg.fields.routingKey], [312, exchange, 'a.b']);
  assert.equal(msg.properties.correlationId, 'c-1', 'returned message lost its properties');
  assert.equal(msg.content.toString(), 'bounce');
});

test('publish to a missing exchange closes the channel', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = scope(t);
  const ch = await confirmChannel(await s.connect());
  const closed = new Promise((resolve) => ch.once('close', resolve));
  await assert.rejects(publishConfirmed(ch, s.name('missing'), 'k', 'x'), 'publish to a missing exchange was confirmed');
  await closed;
  assert.equal(ch.errors.length, 1, 'the channel closed without an error');
  assert.equal(ch.errors[0].code, 404, ch.errors[0].message);
});

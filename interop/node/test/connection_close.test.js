// Closing a connection right after a burst of publishes.
//
// amqplib buffers each channel's frames and sends them through a multiplexer, so the
// connection.close it writes on channel 0 can reach the broker ahead of publishes still
// buffered for channel 1; those keep arriving after the broker's close-ok. RabbitMQ reads and
// discards them until the client closes its socket; a broker that hung up at once would reset
// the connection under the client's writes (ECONNRESET / EPIPE) instead of a clean close.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, WAIT_MS, channel, closeQuietly, connect, scope } = require('../helpers');

// Each round opens a connection, publishes until sendToQueue says the buffer is full, and closes.
const ROUNDS = 5;
const BODY = Buffer.alloc(16 * 1024, 'x');

// Resolves with what happened to `conn.close()`: 'closed', or the error, or 'timeout'.
async function closeOutcome(conn) {
  let timer;
  const gaveUp = new Promise((resolve) => {
    timer = setTimeout(() => resolve('timeout'), WAIT_MS);
  });
  const outcome = await Promise.race([conn.close().then(() => 'closed', (err) => err), gaveUp]);
  clearTimeout(timer);
  return outcome;
}

test('a publisher that closes right after a burst closes cleanly', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = scope(t);
  const admin = await channel(await s.connect());
  const queue = await s.queue(admin, s.name('burst'), {});

  for (let round = 0; round < ROUNDS; round++) {
    const conn = await connect(); // closed by the round itself
    t.after(() => closeQuietly(conn));
    const socketErrors = [];
    conn.connection.stream.on('error', (err) => socketErrors.push(err));
    const ch = await channel(conn);
    let published = 1;
    while (ch.sendToQueue(queue, BODY)) published++;
    assert.ok(published > 1, 'sendToQueue refused the very first message');

    const outcome = await closeOutcome(conn);
    assert.equal(outcome, 'closed', `round ${round}: close after ${published} publishes ended with ${outcome}`);
    assert.deepEqual(conn.errors, [], `round ${round}: connection errors`);
    assert.deepEqual(ch.errors, [], `round ${round}: channel errors`);
    assert.deepEqual(socketErrors.map(String), [], `round ${round}: socket errors`);
  }

  // The broker still answers the other connection (what came after each close was discarded).
  await admin.checkQueue(queue);
});

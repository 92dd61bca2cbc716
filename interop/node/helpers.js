// Helpers shared by the amqplib scenarios.
//
// Every scenario talks to the broker at $AMQP_URL the way an application would.
// Nothing here sleeps and hopes: waits poll a condition on what has actually
// arrived, and give up with a clear message after a deadline.

const crypto = require('node:crypto');
const amqp = require('amqplib');

const AMQP_URL = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f';

// How long any single wait for messages may take before the scenario fails.
const WAIT_MS = Number(process.env.INTEROP_WAIT_SECONDS || 10) * 1000;

// Per-test backstop for node:test, far above any single wait.
const TEST_TIMEOUT_MS = 60_000;

async function connect() {
  const conn = await amqp.connect(AMQP_URL, { timeout: WAIT_MS });
  // Without a listener an 'error' event would crash the process; keep it for the assertions.
  conn.errors = [];
  conn.on('error', (err) => conn.errors.push(err));
  return conn;
}

// Channel errors (a broker's channel.close) are expected in some scenarios: keep them.
function watch(channel) {
  channel.errors = [];
  channel.on('error', (err) => channel.errors.push(err));
  return channel;
}

async function channel(conn) {
  return watch(await conn.createChannel());
}

async function confirmChannel(conn) {
  return watch(await conn.createConfirmChannel());
}

async function waitFor(condition, what, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// Resolves with the broker's error when `promise` is refused, fails if it succeeds.
async function refused(promise, what) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error(`expected the broker to refuse ${what}`);
}

// Consumes a queue (no-ack) and keeps every delivery.
async function collect(ch, queue) {
  const collector = {
    queue,
    messages: [],
    cancelled: false,
    get bodies() {
      return this.messages.map((m) => m.content.toString());
    },
  };
  await ch.consume(
    queue,
    (msg) => {
      if (msg === null) collector.cancelled = true;
      else collector.messages.push(msg);
    },
    { noAck: true },
  );
  return collector;
}

// Closes a connection, but never waits longer than WAIT_MS for a broker that stopped answering.
async function closeQuietly(conn) {
  let timer;
  const gaveUp = new Promise((resolve) => {
    timer = setTimeout(() => resolve('timeout'), WAIT_MS);
  });
  const outcome = await Promise.race([conn.close().catch(() => 'error'), gaveUp]);
  clearTimeout(timer);
  if (outcome === 'timeout') conn.connection.stream.destroy();
}

// Per-test scope: unique names, connections closed and declared things deleted afterwards.
function scope(t) {
  const run = crypto.randomUUID().slice(0, 8);
  const slug = t.name.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '');
  const conns = [];
  const queues = [];
  const exchanges = [];

  t.after(async () => {
    for (const conn of conns) await closeQuietly(conn);
    if (queues.length === 0 && exchanges.length === 0) return;
    const conn = await connect();
    let timer;
    const gaveUp = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`cleanup took more than ${WAIT_MS / 1000}s`)), WAIT_MS);
    });
    const cleanup = async () => {
      const ch = await channel(conn);
      for (const q of queues) await ch.deleteQueue(q);
      for (const x of exchanges) await ch.deleteExchange(x);
    };
    try {
      await Promise.race([cleanup(), gaveUp]);
    } finally {
      clearTimeout(timer);
      await closeQuietly(conn);
    }
  });

  return {
    name: (kind) => `interop.node.${slug}.${kind}.${run}`,
    async connect() {
      const conn = await connect();
      conns.push(conn);
      return conn;
    },
    async queue(ch, queue, options) {
      const ok = await ch.assertQueue(queue, options);
      queues.push(ok.queue);
      return ok.queue;
    },
    async exchange(ch, exchange, type, options) {
      await ch.assertExchange(exchange, type, options);
      exchanges.push(exchange);
      return exchange;
    },
  };
}

module.exports = {
  AMQP_URL,
  TEST_TIMEOUT_MS,
  WAIT_MS,
  channel,
  closeQuietly,
  collect,
  confirmChannel,
  connect,
  refused,
  scope,
  waitFor,
};

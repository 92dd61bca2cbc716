// Helpers shared by the RabbitMQ Stream protocol scenarios (test/stream_*.test.js), driven by
// rabbitmq-stream-js-client.
//
// Every scenario talks to the broker's stream listener at $STREAM_URL
// (rabbitmq-stream://user:password@host:port/vhost, %2f for "/"); without it they are skipped.
// Nothing sleeps and hopes: waits poll what has actually arrived (helpers.waitFor); where absence
// must be shown, a bounded quiet period, as in the amqplib scenarios.
//
// Where RabbitMQ itself lacks a command (StreamStats and single active consumer are 3.11+,
// CreateSuperStream and filtering 3.13+), the scenario is skipped for that RabbitMQ alone:
// skipOnOldRabbitmq. Any other broker (Pigeon) must pass every scenario.

const crypto = require('node:crypto');
const { WAIT_MS } = require('./helpers');
const rabbit = require('rabbitmq-stream-js-client');
const { Connection } = require('rabbitmq-stream-js-client/dist/connection');

const STREAM_URL = process.env.STREAM_URL || '';

function parse(url) {
  if (!url) return null;
  const u = new URL(url);
  if (u.protocol !== 'rabbitmq-stream:' || !u.hostname) {
    throw new Error(`STREAM_URL must look like rabbitmq-stream://user:password@host:port/vhost, not ${url}`);
  }
  return {
    hostname: u.hostname,
    port: Number(u.port || 5552),
    username: decodeURIComponent(u.username || 'guest'),
    password: decodeURIComponent(u.password || 'guest'),
    vhost: u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : '/',
  };
}

const PARAMS = parse(STREAM_URL);
const SKIP = PARAMS ? false : 'STREAM_URL not set (rabbitmq-stream://guest:guest@host:port/%2f)';

// RabbitMQ before 3.11 has no ExchangeCommandVersions (0x001b): it closes the connection on it,
// and this client sends it on every connection. For that RabbitMQ alone (told by its peer
// properties), the call is left out so that the rest can be checked against it; every other
// broker gets it as the client sends it.
function olderRabbitmq(props, major, minor) {
  if (!props || props.product !== 'RabbitMQ') return false;
  const [a, b] = String(props.version || '0.0').split('.').map(Number);
  return a < major || (a === major && b < minor);
}
const exchangeCommandVersions = Connection.prototype.exchangeCommandVersions;
Connection.prototype.exchangeCommandVersions = async function () {
  if (olderRabbitmq(this.peerProperties, 3, 11)) return true;
  return exchangeCommandVersions.call(this);
};

// RabbitMQ 3.10 answers Route (0x0018) and Partitions (0x0019) with the request's key, without the
// response bit (0x8018, 0x8019); the client cannot match them. tolerateRabbitmq310RouteKey() reads
// those two keys as responses, for that RabbitMQ alone (any other broker must send the response
// key), so that the super-stream scenarios can be checked against it.
const { ResponseDecoder } = require('rabbitmq-stream-js-client/dist/response_decoder');

let routeKeyCompat = false;
const emitResponseReceived = ResponseDecoder.prototype.emitResponseReceived;
ResponseDecoder.prototype.emitResponseReceived = function (response) {
  if (routeKeyCompat && (response.key === 0x0018 || response.key === 0x0019)) {
    response.key |= 0x8000;
  }
  return emitResponseReceived.call(this, response);
};

async function tolerateRabbitmq310RouteKey() {
  routeKeyCompat = olderRabbitmq(await broker(), 3, 11);
}

async function connect(overrides = {}) {
  return rabbit.connect({ ...PARAMS, ...overrides });
}

function uniqueName(prefix) {
  return `interop.js.${prefix}.${crypto.randomBytes(4).toString('hex')}`;
}

let brokerProps = null;
// The stream listener's peer properties (product, version), asked once.
async function broker() {
  if (!brokerProps) {
    const client = await connect();
    try {
      brokerProps = client.getConnectionInfo ? await peerProperties(client) : {};
    } finally {
      await client.close();
    }
  }
  return brokerProps;
}

async function peerProperties(client) {
  // The locator connection keeps what the server said in PeerProperties.
  // eslint-disable-next-line dot-notation
  return client['locatorConnection'].peerProperties;
}

// Skips `t` for a real RabbitMQ older than major.minor, never for another broker.
async function skipOnOldRabbitmq(t, major, minor, reason) {
  const props = await broker();
  if (olderRabbitmq(props, major, minor)) {
    t.skip(`RabbitMQ ${props.version}: ${reason}`);
    return true;
  }
  return false;
}

// A stream per scenario, deleted at the end (node:test's t.after).
async function scratchStream(t, client, prefix = 's', args) {
  const stream = uniqueName(prefix);
  await client.createStream({ stream, arguments: args });
  t.after(() =>
    bounded(
      (async () => {
        const c = await connect();
        try {
          await c.deleteStream({ stream });
        } catch {
          // already gone: the scenario deleted it
        } finally {
          await c.close();
        }
      })(),
    ),
  );
  return stream;
}

// Repeats the query `ask()` until it answers `want` (a rejection counts as not yet).
async function eventually(ask, want, what, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await ask();
    } catch (err) {
      last = err;
    }
    if (last === want) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}: last answer ${last}, want ${want}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// Cleanup that cannot hang a run: rabbitmq-stream-js-client's close() can wait forever (e.g. on
// a connection that is already gone), so teardown gives up after the usual wait.
function bounded(promise, ms = WAIT_MS) {
  return Promise.race([promise.catch(() => {}), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
}

// A client closed when the scenario ends (at most once, bounded).
async function scenarioClient(t, overrides) {
  const c = await connect(overrides);
  let closed = false;
  const close = c.close.bind(c);
  c.close = (...args) => {
    if (closed) return Promise.resolve();
    closed = true;
    return close(...args);
  };
  t.after(() => bounded(c.close()));
  return c;
}

const quiet = (ms = 500) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = {
  bounded,
  PARAMS,
  SKIP,
  STREAM_URL,
  broker,
  connect,
  eventually,
  quiet,
  rabbit,
  scenarioClient,
  scratchStream,
  skipOnOldRabbitmq,
  tolerateRabbitmq310RouteKey,
  uniqueName,
};

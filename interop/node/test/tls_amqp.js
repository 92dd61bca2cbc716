// amqplib over TLS, as an application would write it (interop/run.sh runs this file when
// INTEROP_TLS=1; `node --test test/*.test.js` does not pick it up):
// - amqps:// with the CA: the broker is verified, messages round-trip;
// - a client trusting another CA refuses the broker;
// - a client certificate with SASL EXTERNAL (credentials.external()) logs in as the user named
//   in the certificate's CN; EXTERNAL without a certificate is refused.
// Environment: AMQPS_URL, TLS_CA_FILE, TLS_CLIENT_CERT, TLS_CLIENT_KEY, TLS_OTHER_CA (see
// interop/python/tls_helpers.py); a test whose variable is missing is skipped.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { test } = require('node:test');
const amqp = require('amqplib');
const { WAIT_MS, TEST_TIMEOUT_MS, waitFor } = require('../helpers');

const env = (name) => process.env[name] || '';
const missing = (...names) => names.filter((n) => !env(n));

// The socket options amqplib hands to tls.connect: the CA, and a client certificate if given.
function tlsOptions({ ca = env('TLS_CA_FILE'), cert, key } = {}) {
  const url = new URL(env('AMQPS_URL'));
  return {
    timeout: WAIT_MS,
    ca: [fs.readFileSync(ca)],
    servername: url.hostname,
    ...(cert ? { cert: fs.readFileSync(cert), key: fs.readFileSync(key) } : {}),
  };
}

async function roundTrip(conn) {
  conn.on('error', () => {});
  const ch = await conn.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  const body = `over tls ${Math.random()}`;
  const got = [];
  await ch.consume(queue, (m) => got.push(m.content.toString()), { noAck: true });
  ch.sendToQueue(queue, Buffer.from(body));
  await waitFor(() => got.length > 0, `the message on ${queue}`);
  assert.deepEqual(got, [body]);
}

const needs = (...names) => ({
  timeout: TEST_TIMEOUT_MS,
  skip: missing(...names).length ? `${missing(...names).join(', ')} not set` : false,
});

test('amqps:// with the CA verifies the broker and round-trips', needs('AMQPS_URL', 'TLS_CA_FILE'), async () => {
  const conn = await amqp.connect(env('AMQPS_URL'), tlsOptions());
  try {
    assert.ok(conn.connection.stream.encrypted, 'not a TLS socket');
    await roundTrip(conn);
  } finally {
    await conn.close();
  }
});

test('a client trusting another CA refuses the broker', needs('AMQPS_URL', 'TLS_OTHER_CA'), async () => {
  await assert.rejects(amqp.connect(env('AMQPS_URL'), tlsOptions({ ca: env('TLS_OTHER_CA') })), (err) => {
    assert.match(String(err.code || err.message), /CERT|certificate|SELF_SIGNED|UNABLE/i);
    return true;
  });
});

test(
  'a client certificate with EXTERNAL logs in as its common name',
  needs('AMQPS_URL', 'TLS_CA_FILE', 'TLS_CLIENT_CERT', 'TLS_CLIENT_KEY'),
  async () => {
    const opts = tlsOptions({ cert: env('TLS_CLIENT_CERT'), key: env('TLS_CLIENT_KEY') });
    // No user name or password in the URL: the certificate is the identity.
    const url = new URL(env('AMQPS_URL'));
    url.username = '';
    url.password = '';
    const conn = await amqp.connect(url.toString(), { ...opts, credentials: amqp.credentials.external() });
    try {
      await roundTrip(conn);
    } finally {
      await conn.close();
    }
  },
);

test('EXTERNAL without a client certificate is refused', needs('AMQPS_URL', 'TLS_CA_FILE'), async () => {
  await assert.rejects(amqp.connect(env('AMQPS_URL'), { ...tlsOptions(), credentials: amqp.credentials.external() }));
});

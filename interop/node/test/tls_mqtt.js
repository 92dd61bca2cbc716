// mqtt.js over WebSocket, secure WebSocket and TLS, as an application would write it
// (interop/run.sh runs this file when INTEROP_TLS=1; `node --test test/*.test.js` does not):
// - ws:// and wss:// (the broker's path, e.g. /mqtt), MQTT 3.1.1 and 5.0, QoS 1 round trip;
// - mqtts:// with a client certificate and no user name (certificate login);
// - a message published over ws:// reaches a subscriber on mqtts://.
// Environment: MQTT_WS_URL, MQTT_WSS_URL, MQTTS_URL, TLS_CA_FILE, TLS_CLIENT_CERT,
// TLS_CLIENT_KEY; INTEROP_MQTT5=0 leaves MQTT 5.0 out. A test whose variable is missing is skipped.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const { test } = require('node:test');
const mqtt = require('mqtt');
const { WAIT_MS, TEST_TIMEOUT_MS, waitFor } = require('../helpers');

const env = (name) => process.env[name] || '';
const VERSIONS = { 'MQTT 3.1.1': 4, ...(env('INTEROP_MQTT5') === '0' ? {} : { 'MQTT 5.0': 5 }) };

const needs = (...names) => {
  const absent = names.filter((n) => !env(n));
  return { timeout: TEST_TIMEOUT_MS, skip: absent.length ? `${absent.join(', ')} not set` : false };
};

// Connects to the URL in `urlVar` and waits for CONNACK; TLS URLs trust TLS_CA_FILE.
// With a client certificate the URL's user name and password are left out: the certificate is
// the identity.
async function connect(t, urlVar, { version = 4, cert, key } = {}) {
  const parsed = new URL(env(urlVar));
  if (cert) {
    parsed.username = '';
    parsed.password = '';
  }
  const url = parsed.toString();
  const secure = /^(mqtts|wss):/.test(url);
  const client = mqtt.connect(url, {
    protocolVersion: version,
    clientId: `node-tls-${crypto.randomUUID().slice(0, 10)}`,
    reconnectPeriod: 0,
    connectTimeout: WAIT_MS,
    ...(secure ? { ca: [fs.readFileSync(env('TLS_CA_FILE'))] } : {}),
    ...(cert ? { cert: fs.readFileSync(cert), key: fs.readFileSync(key) } : {}),
  });
  t.after(() => client.end(true));
  client.messages = [];
  client.on('message', (topic, payload, packet) => {
    client.messages.push({ topic, text: payload.toString(), qos: packet.qos });
  });
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
    client.once('close', () => reject(new Error(`${url} closed the connection before CONNACK`)));
  });
  client.removeAllListeners('close');
  client.on('error', () => {});
  return client;
}

const topic = () => `interop/tls/${crypto.randomUUID().slice(0, 10)}`;

async function roundTrip(sub, pub, count = 10) {
  const t = topic();
  await sub.subscribeAsync(t, { qos: 1 });
  const sent = Array.from({ length: count }, (_, i) => `m${i}`);
  for (const body of sent) await pub.publishAsync(t, body, { qos: 1 });
  await waitFor(() => sub.messages.length >= count, `${count} messages`);
  assert.deepEqual(
    sub.messages.map((m) => m.text),
    sent,
  );
  assert.ok(sub.messages.every((m) => m.qos === 1 && m.topic === t));
}

for (const [label, version] of Object.entries(VERSIONS)) {
  for (const [urlVar, scheme] of [
    ['MQTT_WS_URL', 'ws://'],
    ['MQTT_WSS_URL', 'wss://'],
  ]) {
    test(`${label} over ${scheme}: QoS 1 round trip`, needs(urlVar, 'TLS_CA_FILE'), async (t) => {
      const sub = await connect(t, urlVar, { version });
      const pub = await connect(t, urlVar, { version });
      await roundTrip(sub, pub);
    });
  }
}

test(
  'mqtts:// with a client certificate and no user name',
  needs('MQTTS_URL', 'TLS_CA_FILE', 'TLS_CLIENT_CERT', 'TLS_CLIENT_KEY'),
  async (t) => {
    const cert = { cert: env('TLS_CLIENT_CERT'), key: env('TLS_CLIENT_KEY') };
    const sub = await connect(t, 'MQTTS_URL', cert);
    const pub = await connect(t, 'MQTTS_URL', cert);
    await roundTrip(sub, pub);
  },
);

test(
  'a ws:// publisher reaches an mqtts:// subscriber',
  needs('MQTT_WS_URL', 'MQTTS_URL', 'TLS_CA_FILE', 'TLS_CLIENT_CERT', 'TLS_CLIENT_KEY'),
  async (t) => {
    const sub = await connect(t, 'MQTTS_URL', { cert: env('TLS_CLIENT_CERT'), key: env('TLS_CLIENT_KEY') });
    const pub = await connect(t, 'MQTT_WS_URL');
    await roundTrip(sub, pub, 1);
  },
);

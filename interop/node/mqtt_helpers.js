// Helpers shared by the mqtt.js scenarios (test/mqtt*.test.js).
//
// Every scenario talks to the broker at $MQTT_URL (mqtt://[user:password@]host:port; anonymous
// when no user is given) the way an application would. Nothing here sleeps and hopes: every wait
// is for a packet or a message that has actually arrived, bounded by INTEROP_WAIT_SECONDS.
//
// Absence is checked with a sentinel: a message published after the ones that must not arrive,
// on a topic the subscriber does receive, by the same publisher. MQTT keeps the order of one
// publisher's messages on a topic [MQTT-4.6.0-5], so once the sentinel is in, anything else would
// be too.

const crypto = require('node:crypto');
const mqtt = require('mqtt');
const { WAIT_MS, waitFor } = require('./helpers');

const MQTT_URL = process.env.MQTT_URL || 'mqtt://127.0.0.1:1883';
// MQTT over WebSocket (test/mqtt_websocket.test.js), ws://host:port/path; unset: those skip.
const MQTT_WS_URL = process.env.MQTT_WS_URL;

// protocolVersion as mqtt.js names it.
const VERSIONS = { 'MQTT 3.1.1': 4, 'MQTT 5.0': 5 };

function unique(prefix) {
  return `${prefix}-${crypto.randomUUID().slice(0, 10)}`;
}

// Rejects with `what` if `promise` takes longer than WAIT_MS.
async function bounded(promise, what) {
  let timer;
  const gaveUp = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${WAIT_MS / 1000}s waiting for ${what}`)), WAIT_MS);
  });
  try {
    return await Promise.race([promise, gaveUp]);
  } finally {
    clearTimeout(timer);
  }
}

// Connects and waits for CONNACK. Never reconnects by itself: a lost connection is the scenario's
// business. The returned client keeps every delivery in `messages` ({ topic, payload, text, qos,
// retain, properties }) and its CONNACK in `connack`.
// `options.url` connects elsewhere than MQTT_URL (ws://... for MQTT over WebSocket).
async function connect(protocolVersion, { url = MQTT_URL, ...options } = {}) {
  const client = mqtt.connect(url, {
    protocolVersion,
    clientId: options.clientId || unique('node'),
    clean: options.clean ?? true,
    reconnectPeriod: 0,
    connectTimeout: WAIT_MS,
    keepalive: 60,
    ...options,
  });
  client.messages = [];
  client.errors = [];
  client.on('message', (topic, payload, packet) => {
    // mqtt-packet builds userProperties without a prototype; a plain object compares simply.
    const properties = { ...(packet.properties || {}) };
    if (properties.userProperties) properties.userProperties = { ...properties.userProperties };
    client.messages.push({
      topic,
      payload,
      text: payload.toString(),
      qos: packet.qos,
      retain: packet.retain,
      properties,
    });
  });
  client.connack = await bounded(
    new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
      client.once('close', () => reject(new Error('connection closed before CONNACK')));
    }),
    'CONNACK',
  );
  client.on('error', (err) => client.errors.push(err));
  return client;
}

// Subscribes and waits for SUBACK; fails if the broker refused or granted another QoS.
async function subscribe(client, filter, qos, options = {}) {
  const granted = await bounded(client.subscribeAsync(filter, { qos, ...options }), `SUBACK for ${filter}`);
  if (granted[0].qos !== qos) {
    throw new Error(`subscription to ${filter} granted ${granted[0].qos}, asked for ${qos}`);
  }
  return granted;
}

// Publishes; for QoS 1 and 2 resolves once the broker acknowledged it (PUBACK / PUBCOMP).
async function publish(client, topic, payload, options = {}) {
  return bounded(client.publishAsync(topic, payload, options), `the acknowledgement of a publish to ${topic}`);
}

async function waitForMessages(client, count, what, topic) {
  const matching = () => client.messages.filter((m) => topic === undefined || m.topic === topic);
  await waitFor(() => matching().length >= count, what || `${count} message(s) on ${client.options.clientId}`);
  return matching();
}

// A normal DISCONNECT.
async function end(client) {
  if (client.disconnected || client.disconnecting) return;
  await bounded(client.endAsync(), 'the end of an MQTT connection').catch(() => client.end(true));
}

// Drops the TCP connection without DISCONNECT: an abnormal disconnect for the broker.
function abort(client) {
  client.options.reconnectPeriod = 0;
  client.stream.destroy();
}

// Per-test scope: unique topic prefix, clients ended afterwards.
function mqttScope(t) {
  const run = crypto.randomUUID().slice(0, 8);
  const slug = t.name.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '');
  const clients = [];
  t.after(async () => {
    for (const c of clients) {
      if (c.connected) await end(c).catch(() => {});
      else c.end(true);
    }
  });
  return {
    run,
    topic: `interop/node/${slug}/${run}`,
    async connect(protocolVersion, options) {
      const client = await connect(protocolVersion, options);
      clients.push(client);
      return client;
    },
  };
}

module.exports = {
  MQTT_URL,
  MQTT_WS_URL,
  VERSIONS,
  abort,
  connect,
  end,
  mqttScope,
  publish,
  subscribe,
  unique,
  waitForMessages,
};

// mqtt.js over WebSocket (ws://), MQTT 3.1.1 and 5.0: the same broker, the same topics as over
// TCP. Runs when MQTT_WS_URL (ws://host:port/path) is set.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS } = require('../helpers');
const { MQTT_WS_URL, VERSIONS, mqttScope, publish, subscribe, waitForMessages } = require('../mqtt_helpers');

const skip = MQTT_WS_URL ? false : 'MQTT_WS_URL not set';

for (const [label, version] of Object.entries(VERSIONS)) {
  test(`${label}: WebSocket and TCP clients share topics`, { timeout: TEST_TIMEOUT_MS, skip }, async (t) => {
    const s = mqttScope(t);
    const overWs = await s.connect(version, { url: MQTT_WS_URL });
    await subscribe(overWs, `${s.topic}/to-ws`, 1);
    const overTcp = await s.connect(version);
    await subscribe(overTcp, `${s.topic}/to-tcp`, 1);

    const sent = Array.from({ length: 10 }, (_, i) => `m${i}`);
    for (const body of sent) {
      await publish(overTcp, `${s.topic}/to-ws`, body, { qos: 1 });
      await publish(overWs, `${s.topic}/to-tcp`, body, { qos: 1 });
    }
    const toWs = await waitForMessages(overWs, sent.length, '10 messages over WebSocket');
    const toTcp = await waitForMessages(overTcp, sent.length, '10 messages over TCP');
    assert.deepEqual(
      toWs.map((m) => m.text),
      sent,
    );
    assert.deepEqual(
      toTcp.map((m) => m.text),
      sent,
    );
  });

  test(`${label}: a large message crosses in several frames`, { timeout: TEST_TIMEOUT_MS, skip }, async (t) => {
    const s = mqttScope(t);
    const overWs = await s.connect(version, { url: MQTT_WS_URL });
    await subscribe(overWs, s.topic, 1);
    const body = Buffer.alloc(300 * 1024, 0).map((_, i) => i % 251);
    await publish(overWs, s.topic, body, { qos: 1 });
    const [got] = await waitForMessages(overWs, 1, 'the large message back');
    assert.ok(got.payload.equals(body), 'the payload changed on the way');
  });
}

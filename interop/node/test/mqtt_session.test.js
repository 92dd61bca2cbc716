// mqtt.js, MQTT 3.1.1 and 5.0: will messages and persistent sessions.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS } = require('../helpers');
const { VERSIONS, abort, end, mqttScope, publish, subscribe, unique, waitForMessages } = require('../mqtt_helpers');

for (const [label, version] of Object.entries(VERSIONS)) {
  const v5 = version === 5;

  test(`${label}: will on abnormal disconnect, none on a clean one`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const s = mqttScope(t);
    const watcher = await s.connect(version);
    await subscribe(watcher, `${s.topic}/#`, 2);

    // The clean one goes first: had its will been published, it would have come before the
    // dropped client's, which is published only once that client is gone.
    const polite = await s.connect(version, {
      will: { topic: `${s.topic}/polite`, payload: Buffer.from('polite-will'), qos: 1, retain: false },
    });
    await end(polite);

    const will = { topic: `${s.topic}/dropped`, payload: Buffer.from('dropped-will'), qos: 1, retain: false };
    if (v5) will.properties = { userProperties: { reason: 'test' }, contentType: 'text/plain' };
    const dropped = await s.connect(version, { will });
    abort(dropped);

    await waitForMessages(watcher, 1, 'the will of the dropped connection', `${s.topic}/dropped`);
    assert.deepEqual(
      watcher.messages.map((m) => [m.topic, m.text]),
      [[`${s.topic}/dropped`, 'dropped-will']],
      'expected exactly the dropped client’s will',
    );
    const [got] = watcher.messages;
    assert.equal(got.qos, 1);
    assert.equal(got.retain, false);
    if (v5) {
      assert.deepEqual(got.properties.userProperties, { reason: 'test' });
      assert.equal(got.properties.contentType, 'text/plain');
    }
  });

  test(`${label}: persistent session receives QoS 1 messages published while offline`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const s = mqttScope(t);
    const clientId = unique('node-persistent');
    const session = v5 ? { properties: { sessionExpiryInterval: 300 } } : {};

    const first = await s.connect(version, { clientId, clean: false, ...session });
    assert.equal(first.connack.sessionPresent, false, 'a new client id has no session');
    await subscribe(first, s.topic, 1);
    await end(first);

    const pub = await s.connect(version);
    const sent = Array.from({ length: 5 }, (_, i) => `offline-${i}`);
    for (const body of sent) await publish(pub, s.topic, body, { qos: 1 });

    try {
      const again = await s.connect(version, { clientId, clean: false, ...session });
      assert.equal(again.connack.sessionPresent, true, 'CONNACK must say session present');
      const got = await waitForMessages(again, sent.length, 'the messages queued while offline');
      assert.deepEqual(
        got.map((m) => m.text),
        sent,
        'lost, duplicated or reordered messages',
      );
      assert.ok(got.every((m) => m.qos === 1));

      await publish(pub, s.topic, 'online', { qos: 1 });
      await waitForMessages(again, sent.length + 1, 'a message published after the reconnect');
      await end(again);
    } finally {
      // Leave no session behind.
      const cleaner = await s.connect(version, {
        clientId,
        clean: true,
        ...(v5 ? { properties: { sessionExpiryInterval: 0 } } : {}),
      });
      await end(cleaner);
    }
  });
}

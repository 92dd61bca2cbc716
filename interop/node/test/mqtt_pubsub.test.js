// mqtt.js, MQTT 3.1.1 and 5.0: QoS 0/1/2 round trips, wildcards, retained messages.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS } = require('../helpers');
const { VERSIONS, mqttScope, publish, subscribe, waitForMessages } = require('../mqtt_helpers');

for (const [label, version] of Object.entries(VERSIONS)) {
  for (const [pubQos, subQos] of [
    [0, 2],
    [1, 2],
    [2, 2],
    [2, 1],
    [2, 0],
  ]) {
    test(`${label}: QoS ${pubQos} publish to a QoS ${subQos} subscription`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const s = mqttScope(t);
      const sub = await s.connect(version);
      await subscribe(sub, s.topic, subQos);
      const pub = await s.connect(version);

      const sent = Array.from({ length: 20 }, (_, i) => `qos${pubQos}-m${i}`);
      for (const body of sent) await publish(pub, s.topic, body, { qos: pubQos });
      const got = await waitForMessages(sub, sent.length, `${sent.length} QoS ${pubQos} messages`);

      assert.deepEqual(
        got.map((m) => m.text),
        sent,
        'lost, duplicated or reordered messages',
      );
      assert.deepEqual([...new Set(got.map((m) => m.qos))], [Math.min(pubQos, subQos)], 'delivered at the wrong QoS');
      assert.ok(
        got.every((m) => m.topic === s.topic && !m.retain),
        'wrong topic, or RETAIN set on a live message',
      );
    });
  }

  test(`${label}: wildcards + and #`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const s = mqttScope(t);
    const T = s.topic;
    const plus = await s.connect(version);
    await subscribe(plus, `${T}/+/temp`, 1);
    const hash = await s.connect(version);
    await subscribe(hash, `${T}/#`, 1);
    const pub = await s.connect(version);

    const published = [`${T}/room1/temp`, `${T}/room2/temp`, `${T}/room1/humidity`, `${T}/room1/temp/raw`, T, `${T}/x`];
    const sentinel = `${T}/zz/temp`; // matches both filters, published last
    for (const topic of [...published, sentinel]) await publish(pub, topic, topic, { qos: 1 });
    await waitForMessages(plus, 1, 'the sentinel on T/+/temp', sentinel);
    await waitForMessages(hash, 1, 'the sentinel on T/#', sentinel);

    assert.deepEqual(
      plus.messages.map((m) => m.topic),
      [`${T}/room1/temp`, `${T}/room2/temp`, sentinel],
    );
    assert.deepEqual(
      hash.messages.map((m) => m.topic),
      [...published, sentinel],
      '# must match every level below, and the parent level itself',
    );
  });

  test(`${label}: retained message reaches a later subscriber, an empty one clears it`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const s = mqttScope(t);
    const pub = await s.connect(version);
    await publish(pub, s.topic, 'the-retained', { qos: 1, retain: true });

    const late = await s.connect(version);
    await subscribe(late, s.topic, 2);
    const [got] = await waitForMessages(late, 1, 'the retained message');
    assert.equal(got.text, 'the-retained');
    assert.equal(got.retain, true, 'a retained message sent on subscription must have RETAIN set');
    assert.equal(got.qos, 1);

    await publish(pub, s.topic, '', { qos: 1, retain: true });
    const cleared = (await waitForMessages(late, 2, 'the empty retained publish'))[1];
    assert.equal(cleared.payload.length, 0);
    assert.equal(cleared.retain, false, 'a subscriber that was already there gets RETAIN 0');

    // The new subscriber publishes a plain message right after its SUBACK: a retained message
    // for its subscription would have been sent before that one.
    const after = await s.connect(version);
    await subscribe(after, s.topic, 2);
    await publish(after, s.topic, 'sentinel', { qos: 1 });
    await waitForMessages(after, 1, 'the sentinel');
    assert.deepEqual(
      after.messages.map((m) => m.text),
      ['sentinel'],
      'the cleared retained message was delivered',
    );
  });
}

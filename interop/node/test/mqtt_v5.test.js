// mqtt.js, MQTT 5.0 only: user properties and request/response (response topic, correlation data).

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS } = require('../helpers');
const { mqttScope, publish, subscribe, waitForMessages } = require('../mqtt_helpers');

for (const qos of [0, 1, 2]) {
  test(`MQTT 5.0: user properties arrive unchanged and in order (QoS ${qos})`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const s = mqttScope(t);
    const sub = await s.connect(5);
    await subscribe(sub, s.topic, 2);
    const pub = await s.connect(5);

    // mqtt.js writes an array value as repeated properties with the same name, in order.
    const userProperties = { zeta: '1', alpha: 'two', dup: ['first', 'second'], utf8: 'é✓' };
    await publish(pub, s.topic, '{"n": 1}', {
      qos,
      properties: { userProperties, contentType: 'application/json', payloadFormatIndicator: true },
    });
    const [got] = await waitForMessages(sub, 1, 'the message with user properties');

    assert.equal(got.text, '{"n": 1}');
    assert.deepEqual(got.properties.userProperties, userProperties, 'user properties changed [MQTT-3.3.2-18]');
    assert.deepEqual(Object.keys(got.properties.userProperties), Object.keys(userProperties), 'order changed');
    assert.equal(got.properties.contentType, 'application/json');
    assert.equal(got.properties.payloadFormatIndicator, true);
  });
}

test('MQTT 5.0: request/response with response topic and correlation data', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = mqttScope(t);
  const requests = `${s.topic}/requests`;
  const replies = `${s.topic}/replies/${s.run}`;
  const responder = await s.connect(5);
  await subscribe(responder, requests, 1);
  const requester = await s.connect(5);
  await subscribe(requester, replies, 1);

  // Binary correlation data, not valid UTF-8: it must come back byte for byte.
  const correlations = [0, 1, 2].map((i) => Buffer.concat([Buffer.from([0x00, 0xff, i]), crypto.randomBytes(16)]));
  for (const [i, correlationData] of correlations.entries()) {
    await publish(requester, requests, `request ${i}`, {
      qos: 1,
      properties: { responseTopic: replies, correlationData, userProperties: { n: String(i) } },
    });
  }
  const got = await waitForMessages(responder, 3, 'three requests');
  for (const [i, req] of got.entries()) {
    assert.equal(req.text, `request ${i}`);
    assert.equal(req.properties.responseTopic, replies);
    assert.deepEqual(req.properties.correlationData, correlations[i]);
    assert.deepEqual(req.properties.userProperties, { n: String(i) });
  }
  // Answer in reverse order: the requester must rely on the correlation data, not on order.
  for (const req of [...got].reverse()) {
    await publish(responder, req.properties.responseTopic, req.text.replace('request', 'response'), {
      qos: 1,
      properties: { correlationData: req.properties.correlationData, userProperties: { status: 'ok' } },
    });
  }
  const answers = await waitForMessages(requester, 3, 'three responses');
  for (const a of answers) {
    const i = correlations.findIndex((c) => c.equals(a.properties.correlationData));
    assert.notEqual(i, -1, `an answer with unknown correlation data ${a.properties.correlationData?.toString('hex')}`);
    assert.equal(a.text, `response ${i}`);
    assert.equal(a.topic, replies);
    assert.deepEqual(a.properties.userProperties, { status: 'ok' });
  }
  assert.equal(new Set(answers.map((a) => a.text)).size, 3);
});

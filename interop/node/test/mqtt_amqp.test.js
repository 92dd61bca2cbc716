// One namespace for both protocols: mqtt.js and amqplib on the same broker.
//
// An MQTT topic a/b/c is the routing key a.b.c on amq.topic; an MQTT filter control/+/command is
// the binding control.*.command. The AMQP queue and the MQTT subscription use the broad patterns
// an application would (sensor.*.data, control/+/command), so each scenario only looks at
// messages carrying its own run id and ends on a sentinel that its own publisher sends last.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, channel, collect, confirmChannel, scope, waitFor } = require('../helpers');
const { VERSIONS, mqttScope, publish, subscribe } = require('../mqtt_helpers');

for (const [label, version] of Object.entries(VERSIONS)) {
  const v5 = version === 5;

  test(`${label}: MQTT publisher to an AMQP consumer on sensor.*.data`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const s = scope(t);
    const m = mqttScope(t);
    const run = m.run;
    const ch = await channel(await s.connect());
    const queue = await s.queue(ch, s.name('sensors'), { durable: false });
    await ch.bindQueue(queue, 'amq.topic', 'sensor.*.data');
    const sensors = await collect(ch, queue);

    const pub = await m.connect(version);
    const properties = v5
      ? {
          userProperties: { unit: 'celsius', site: 'lab' },
          contentType: 'application/json',
          correlationData: Buffer.from(`corr-${run}`),
          responseTopic: `replies/${run}/x`,
        }
      : undefined;
    await publish(pub, `sensor/${run}/data`, '{"t": 21.5}', { qos: 1, properties });
    await publish(pub, `sensor/${run}q0/data`, 'qos0', { qos: 0 });
    await publish(pub, `sensor/${run}/status`, 'not routed: wrong last level', { qos: 1 });
    await publish(pub, `sensor/${run}/x/data`, 'not routed: one level too many', { qos: 1 });
    await publish(pub, `sensor/${run}end/data`, 'sentinel', { qos: 1 });

    const ours = () => sensors.messages.filter((msg) => msg.fields.routingKey.split('.')[1].startsWith(run));
    await waitFor(() => ours().some((msg) => msg.content.toString() === 'sentinel'), 'the sentinel on the AMQP queue');
    const got = ours();
    assert.deepEqual(
      got.map((msg) => [msg.fields.routingKey, msg.content.toString()]),
      [
        [`sensor.${run}.data`, '{"t": 21.5}'],
        [`sensor.${run}q0.data`, 'qos0'],
        [`sensor.${run}end.data`, 'sentinel'],
      ],
    );
    assert.equal(got[0].fields.exchange, 'amq.topic');
    assert.equal(got[0].properties.deliveryMode, 2, 'QoS 1 must arrive as a persistent message');
    assert.ok([undefined, 1].includes(got[1].properties.deliveryMode), 'QoS 0 must arrive as a transient message');
    if (v5) {
      const p = got[0].properties;
      assert.equal(String(p.headers.unit), 'celsius');
      assert.equal(String(p.headers.site), 'lab');
      assert.equal(p.contentType, 'application/json');
      assert.equal(p.correlationId, `corr-${run}`);
      assert.equal(p.replyTo, `replies.${run}.x`, 'the response topic must map to a routing key');
    }
  });

  test(`${label}: AMQP publisher to an MQTT subscriber on control/+/command`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const s = scope(t);
    const m = mqttScope(t);
    const run = m.run;
    const sub = await m.connect(version);
    await subscribe(sub, 'control/+/command', 1);

    const ch = await confirmChannel(await s.connect());
    ch.publish('amq.topic', `control.${run}.command`, Buffer.from('start'), {
      deliveryMode: 2,
      contentType: 'text/plain',
      correlationId: `c-${run}`,
      replyTo: `replies.${run}.x`,
      headers: { origin: 'amqplib', attempt: 3 },
    });
    ch.publish('amq.topic', `control.${run}t.command`, Buffer.from('transient'), { deliveryMode: 1 });
    ch.publish('amq.topic', `control.${run}.status`, Buffer.from('not routed: wrong last word'));
    ch.publish('amq.topic', `control.${run}.x.command`, Buffer.from('not routed: one word too many'));
    ch.publish('amq.topic', `control.${run}end.command`, Buffer.from('sentinel'), { deliveryMode: 2 });
    await ch.waitForConfirms();

    const ours = () => sub.messages.filter((msg) => msg.topic.split('/')[1].startsWith(run));
    await waitFor(() => ours().some((msg) => msg.text === 'sentinel'), 'the sentinel on the MQTT subscriber');
    const got = ours();
    assert.deepEqual(
      got.map((msg) => [msg.topic, msg.text]),
      [
        [`control/${run}/command`, 'start'],
        [`control/${run}t/command`, 'transient'],
        [`control/${run}end/command`, 'sentinel'],
      ],
    );
    assert.equal(got[0].qos, 1, 'a persistent AMQP message is QoS 1 to a QoS 1 subscription');
    assert.equal(got[1].qos, 0, 'a transient AMQP message is QoS 0');
    if (v5) {
      const p = got[0].properties;
      assert.equal(p.contentType, 'text/plain');
      assert.deepEqual(p.correlationData, Buffer.from(`c-${run}`));
      assert.equal(p.responseTopic, `replies/${run}/x`);
      assert.deepEqual(p.userProperties, { origin: 'amqplib', attempt: '3' });
    }
  });
}

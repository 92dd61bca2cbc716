"""One namespace for both protocols: paho-mqtt and pika on the same broker.

An MQTT topic a/b/c is the routing key a.b.c on amq.topic; an MQTT filter control/+/command is the
binding control.*.command. The AMQP queue and MQTT subscription below use the broad patterns an
application would (sensor.*.data, control/+/command), so each scenario only looks at messages
carrying its own run id and ends on a sentinel that its own publisher sends last.
"""

import uuid

import pika
import pytest

from helpers import Collector, wait_until
from mqtt_helpers import V5, VERSIONS, mqtt_clients, publish_properties, wait  # noqa: F401

pytestmark = pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())


def test_mqtt_publisher_to_amqp_consumer(version, mqtt_clients, connections, admin, name):
    run = uuid.uuid4().hex[:10]
    conn = connections()
    ch = conn.channel()
    queue = admin.queue(name("sensors"))
    ch.queue_bind(queue, "amq.topic", "sensor.*.data")
    sensors = Collector(ch, queue)

    pub = mqtt_clients(version)
    pub.connect()
    props = None
    if version == V5:
        props = publish_properties(
            UserProperty=[("unit", "celsius"), ("site", "lab")],
            ContentType="application/json",
            CorrelationData=b"corr-" + run.encode(),
            ResponseTopic=f"replies/{run}/x",
        )
    pub.publish(f"sensor/{run}/data", '{"t": 21.5}', qos=1, properties=props)
    pub.publish(f"sensor/{run}q0/data", "qos0", qos=0)
    pub.publish(f"sensor/{run}/status", "not routed: wrong last level", qos=1)
    pub.publish(f"sensor/{run}/x/data", "not routed: one level too many", qos=1)
    pub.publish(f"sensor/{run}end/data", "sentinel", qos=1)

    def ours():
        return [m for m in sensors.messages if m[0].split(".")[1].startswith(run)]

    wait_until([conn], lambda: any(m[2] == "sentinel" for m in ours()), "the sentinel on the AMQP queue")
    got = ours()
    assert [(key, body) for key, _, body in got] == [
        (f"sensor.{run}.data", '{"t": 21.5}'),
        (f"sensor.{run}q0.data", "qos0"),
        (f"sensor.{run}end.data", "sentinel"),
    ]
    first, qos0 = got[0][1], got[1][1]
    assert first.delivery_mode == 2, "QoS 1 must arrive as a persistent message"
    assert qos0.delivery_mode in (None, 1), "QoS 0 must arrive as a transient message"
    if version == V5:
        headers = first.headers or {}
        assert headers.get("unit") in ("celsius", b"celsius"), headers
        assert headers.get("site") in ("lab", b"lab"), headers
        assert first.content_type == "application/json"
        assert first.correlation_id == f"corr-{run}"
        assert first.reply_to == f"replies.{run}.x", "the response topic must map to a routing key"


def test_amqp_publisher_to_mqtt_subscriber(version, mqtt_clients, connections):
    run = uuid.uuid4().hex[:10]
    sub = mqtt_clients(version)
    sub.connect()
    sub.subscribe("control/+/command", 1)

    conn = connections()
    ch = conn.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(
        delivery_mode=2,
        content_type="text/plain",
        correlation_id=f"c-{run}",
        reply_to=f"replies.{run}.x",
        headers={"origin": "pika", "attempt": 3},
    )
    ch.basic_publish("amq.topic", f"control.{run}.command", b"start", props)
    ch.basic_publish("amq.topic", f"control.{run}t.command", b"transient", pika.BasicProperties(delivery_mode=1))
    ch.basic_publish("amq.topic", f"control.{run}.status", b"not routed: wrong last word")
    ch.basic_publish("amq.topic", f"control.{run}.x.command", b"not routed: one word too many")
    ch.basic_publish("amq.topic", f"control.{run}end.command", b"sentinel", pika.BasicProperties(delivery_mode=2))

    def ours():
        return [m for m in list(sub.messages) if m.topic.split("/")[1].startswith(run)]

    wait(lambda: any(m.text == "sentinel" for m in ours()), "the sentinel on the MQTT subscriber")
    got = ours()
    assert [(m.topic, m.text) for m in got] == [
        (f"control/{run}/command", "start"),
        (f"control/{run}t/command", "transient"),
        (f"control/{run}end/command", "sentinel"),
    ]
    assert got[0].qos == 1, "a persistent AMQP message is QoS 1 to a QoS 1 subscription"
    assert got[1].qos == 0, "a transient AMQP message is QoS 0"
    if version == V5:
        first = got[0]
        assert first.prop("ContentType") == "text/plain"
        assert first.prop("CorrelationData") == f"c-{run}".encode()
        assert first.prop("ResponseTopic") == f"replies/{run}/x"
        assert first.prop("UserProperty") == [("origin", "pika"), ("attempt", "3")], first.properties

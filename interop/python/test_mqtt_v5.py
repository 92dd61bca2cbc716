"""paho-mqtt, MQTT 5.0 only: user properties and request/response (response topic, correlation data)."""

import uuid

import pytest

from mqtt_helpers import V5, mqtt_clients, publish_properties, topic  # noqa: F401


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_user_properties_arrive_in_order(mqtt_clients, topic, qos):
    """User properties reach the subscriber unchanged and in order, repeated names included
    [MQTT-3.3.2-17/18]; content type and payload format indicator come along."""
    sub = mqtt_clients(V5)
    sub.connect()
    sub.subscribe(topic, 2)
    pub = mqtt_clients(V5)
    pub.connect()

    user = [("zeta", "1"), ("alpha", "two"), ("dup", "first"), ("dup", "second"), ("empty", ""), ("utf8", "é✓")]
    props = publish_properties(UserProperty=user, ContentType="application/json", PayloadFormatIndicator=1)
    pub.publish(topic, '{"n": 1}', qos=qos, properties=props)
    (got,) = sub.wait_for(1, "the message with user properties")

    assert got.text == '{"n": 1}'
    assert got.prop("UserProperty") == user, f"user properties changed: {got.prop('UserProperty')}"
    assert got.prop("ContentType") == "application/json"
    assert got.prop("PayloadFormatIndicator") == 1


def test_request_response(mqtt_clients, topic):
    """A requester names a response topic and correlation data; the responder answers there with
    the same correlation data, and the requester matches the answer to its request."""
    requests = f"{topic}/requests"
    replies = f"{topic}/replies/{uuid.uuid4().hex[:8]}"

    responder = mqtt_clients(V5)
    responder.connect()
    responder.subscribe(requests, 1)
    requester = mqtt_clients(V5)
    requester.connect()
    requester.subscribe(replies, 1)

    # Binary correlation data, not valid UTF-8: it must come back byte for byte.
    correlations = [b"\x00\xffreq-" + bytes([i]) + uuid.uuid4().bytes for i in range(3)]
    for i, corr in enumerate(correlations):
        props = publish_properties(ResponseTopic=replies, CorrelationData=corr, UserProperty=[("n", str(i))])
        requester.publish(requests, f"request {i}", qos=1, properties=props)

    got = responder.wait_for(3, "three requests")
    for i, req in enumerate(got):
        assert req.text == f"request {i}"
        assert req.prop("ResponseTopic") == replies, req.properties
        assert req.prop("CorrelationData") == correlations[i], req.properties
        assert req.prop("UserProperty") == [("n", str(i))], req.properties
    # Answer in reverse order: the requester must rely on the correlation data, not on order.
    for req in reversed(got):
        answer = publish_properties(CorrelationData=req.prop("CorrelationData"), UserProperty=[("status", "ok")])
        responder.publish(req.prop("ResponseTopic"), req.text.replace("request", "response"), qos=1, properties=answer)

    answers = requester.wait_for(3, "three responses")
    by_correlation = {a.prop("CorrelationData"): a.text for a in answers}
    assert by_correlation == {c: f"response {i}" for i, c in enumerate(correlations)}, by_correlation
    assert all(a.topic == replies for a in answers)
    assert all(a.prop("UserProperty") == [("status", "ok")] for a in answers)

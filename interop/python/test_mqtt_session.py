"""paho-mqtt, MQTT 3.1.1 and 5.0: will messages and persistent sessions."""

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_helpers import V5, VERSIONS, mqtt_clients, topic, unique  # noqa: F401

pytestmark = pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())


def test_will_on_abnormal_disconnect(version, mqtt_clients, topic):
    """A connection lost without DISCONNECT publishes its will; a clean DISCONNECT does not.

    The clean one goes first: had its will been published, it would have come before the
    second client's, which is published only after that second client is dropped.
    """
    watcher = mqtt_clients(version)
    watcher.connect()
    watcher.subscribe(f"{topic}/#", 2)

    props = None
    if version == V5:
        props = Properties(PacketTypes.WILLMESSAGE)
        props.UserProperty = [("reason", "test")]
        props.ContentType = "text/plain"

    polite = mqtt_clients(version)
    polite.connect(will=(f"{topic}/polite", "polite-will", 1))
    polite.disconnect()

    dropped = mqtt_clients(version)
    will = (f"{topic}/dropped", "dropped-will", 1) + ((props,) if props else ())
    dropped.connect(will=will)
    dropped.abort()

    watcher.wait_for(1, "the will of the dropped connection", topic=f"{topic}/dropped")
    assert [(m.topic, m.text) for m in watcher.messages] == [(f"{topic}/dropped", "dropped-will")], (
        "expected exactly the dropped client's will"
    )
    (got,) = watcher.messages
    assert got.qos == 1 and not got.retain, got
    if version == V5:
        assert got.prop("UserProperty") == [("reason", "test")], got.properties
        assert got.prop("ContentType") == "text/plain", got.properties


def test_persistent_session_gets_messages_published_while_offline(version, mqtt_clients, topic):
    """clean_session=0 (3.1.1) / clean_start=0 with a session expiry (5.0): QoS 1 messages
    published while the subscriber is away are delivered when it comes back, in order."""
    client_id = unique("py-persistent")
    expiry = 300 if version == V5 else None

    first = mqtt_clients(version, client_id=client_id, clean=False)
    first.connect(session_expiry=expiry)
    first.subscribe(topic, 1)
    first.disconnect()

    pub = mqtt_clients(version)
    pub.connect()
    sent = [f"offline-{i}" for i in range(5)]
    for body in sent:
        pub.publish(topic, body, qos=1)  # acknowledged: the broker has it

    again = mqtt_clients(version, client_id=client_id, clean=False)
    try:
        session_present = again.connect(session_expiry=expiry)
        assert session_present, "CONNACK must say session present when the session was kept"
        got = again.wait_for(len(sent), "the messages queued while offline")
        assert [m.text for m in got] == sent, "lost, duplicated or reordered messages"
        assert {m.qos for m in got} == {1}

        # Still subscribed: a message published now arrives too.
        pub.publish(topic, "online", qos=1)
        again.wait_for(len(sent) + 1, "a message published after the reconnect")
        assert again.messages[-1].text == "online"
        again.disconnect()
    finally:
        # Leave no session behind: a clean session (5.0: with expiry 0) discards it.
        cleaner = mqtt_clients(version, client_id=client_id, clean=True)
        cleaner.connect(session_expiry=0 if version == V5 else None)
        cleaner.disconnect()


def test_clean_session_discards_the_old_one(version, mqtt_clients, topic):
    """Connecting with a clean session drops the stored session: no session present, no
    subscription, nothing queued."""
    client_id = unique("py-clean")
    expiry = 300 if version == V5 else None
    first = mqtt_clients(version, client_id=client_id, clean=False)
    first.connect(session_expiry=expiry)
    first.subscribe(topic, 1)
    first.disconnect()

    pub = mqtt_clients(version)
    pub.connect()
    pub.publish(topic, "queued-for-the-old-session", qos=1)

    fresh = mqtt_clients(version, client_id=client_id, clean=True)
    assert not fresh.connect(session_expiry=0 if version == V5 else None), "session present after a clean start"
    fresh.subscribe(f"{topic}/sentinel", 1)
    fresh.publish(f"{topic}/sentinel", "sentinel", qos=1)
    fresh.wait_for(1, "the sentinel")
    assert [m.text for m in fresh.messages] == ["sentinel"], "the old session's message or subscription survived"

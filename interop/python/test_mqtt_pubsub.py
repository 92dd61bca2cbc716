"""paho-mqtt, MQTT 3.1.1 and 5.0: QoS 0/1/2 round trips, wildcards, retained messages, logins."""

import paho.mqtt.client as mqtt
import pytest

from mqtt_helpers import HOST, PORT, VERSIONS, mqtt_clients, topic, wait  # noqa: F401

pytestmark = pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())


@pytest.mark.parametrize(
    "pub_qos,sub_qos",
    [(0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)],
    ids=["pub0-sub2", "pub1-sub2", "pub2-sub2", "pub2-sub1", "pub2-sub0", "pub1-sub0"],
)
def test_qos_round_trip(version, mqtt_clients, topic, pub_qos, sub_qos):
    """Every message arrives once, in order, at the lower of the publish and subscription QoS."""
    sub = mqtt_clients(version)
    sub.connect()
    assert sub.subscribe(topic, sub_qos) == sub_qos, "granted QoS differs from the requested one"
    pub = mqtt_clients(version)
    pub.connect()

    sent = [f"qos{pub_qos}-m{i}" for i in range(20)]
    for body in sent:
        pub.publish(topic, body, qos=pub_qos)
    got = sub.wait_for(len(sent), f"{len(sent)} QoS {pub_qos} messages")

    assert [m.text for m in got] == sent, "lost, duplicated or reordered messages"
    assert {m.topic for m in got} == {topic}
    assert {m.qos for m in got} == {min(pub_qos, sub_qos)}, "delivered at the wrong QoS"
    assert not any(m.retain for m in got), "a live message was delivered with RETAIN set"


def test_wildcards(version, mqtt_clients, topic):
    """`+` matches exactly one level, `#` any number including none (the parent itself)."""
    plus = mqtt_clients(version)
    plus.connect()
    plus.subscribe(f"{topic}/+/temp", 1)
    hash_ = mqtt_clients(version)
    hash_.connect()
    hash_.subscribe(f"{topic}/#", 1)
    both = mqtt_clients(version)
    both.connect()
    both.subscribe(f"{topic}/+/+", 1)
    pub = mqtt_clients(version)
    pub.connect()

    published = [
        f"{topic}/room1/temp",
        f"{topic}/room2/temp",
        f"{topic}/room1/humidity",
        f"{topic}/room1/temp/raw",
        topic,
        f"{topic}/x",
        f"{topic}//temp",
    ]
    sentinel = f"{topic}/zz/temp"  # matches all three filters, published last
    for t in published + [sentinel]:
        pub.publish(t, t, qos=1)
    for client in (plus, hash_, both):
        client.wait_for(1, f"the sentinel on {client.client_id}", topic=sentinel)

    assert [m.topic for m in plus.messages] == [
        f"{topic}/room1/temp",
        f"{topic}/room2/temp",
        f"{topic}//temp",
        sentinel,
    ]
    assert [m.topic for m in hash_.messages] == published + [sentinel]
    assert [m.topic for m in both.messages] == [
        f"{topic}/room1/temp",
        f"{topic}/room2/temp",
        f"{topic}/room1/humidity",
        f"{topic}//temp",
        sentinel,
    ]
    assert all(m.payload.decode() == m.topic for m in hash_.messages)


def test_retained_message_then_cleared(version, mqtt_clients, topic):
    """A retained message reaches later subscribers (RETAIN set); an empty retained publish clears it.

    The absence check: the new subscriber publishes a plain message on the topic right after its
    SUBACK; a retained message for its subscription would have been sent before that one.
    """
    pub = mqtt_clients(version)
    pub.connect()
    live = mqtt_clients(version)
    live.connect()
    live.subscribe(topic, 2)
    pub.publish(topic, "the-retained", qos=1, retain=True)
    live.wait_for(1, "the retained message on a subscriber that was already there")

    late = mqtt_clients(version)
    late.connect()
    late.subscribe(topic, 2)
    (got,) = late.wait_for(1, "the retained message on a later subscriber")
    assert (got.text, got.retain, got.qos) == ("the-retained", True, 1), got
    (already,) = live.messages
    assert (already.text, already.retain) == ("the-retained", False), (
        "a subscriber that was there when it was published must get RETAIN 0 [MQTT-3.3.1-9]"
    )

    # An empty retained publish removes it [MQTT-3.3.1-10/11] and is forwarded like any message.
    pub.publish(topic, b"", qos=1, retain=True)
    cleared = late.wait_for(2, "the empty retained publish on a subscriber")[1]
    assert (cleared.payload, cleared.retain) == (b"", False), cleared

    after = mqtt_clients(version)
    after.connect()
    after.subscribe(topic, 2)
    after.publish(topic, "sentinel", qos=1)
    after.wait_for(1, "the sentinel")
    assert [m.text for m in after.messages] == ["sentinel"], "the cleared retained message was delivered"


def test_credentials(version, mqtt_clients):
    """guest/guest logs in from loopback; a wrong password is refused with the protocol's code."""
    good = mqtt_clients(version)
    good.mqtt.username_pw_set("guest", "guest")
    good.connect()

    bad = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bad-{good.client_id}", protocol=version, reconnect_on_failure=False
    )
    bad.username_pw_set("guest", "not-the-password")
    codes = []
    bad.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc)
    bad.connect(HOST, PORT)
    bad.loop_start()
    try:
        wait(lambda: codes, "the CONNACK refusing a wrong password")
    finally:
        bad.loop_stop()
        bad.socket() and bad.socket().close()
    (code,) = codes
    assert code.is_failure, f"a wrong password was accepted: {code}"
    # 5.0: 0x86 bad user name or password (0x87 not authorized tolerated); paho reports 3.1.1's
    # return codes 4 and 5 as those same reason codes.
    assert code.value in {0x86, 0x87}, f"unexpected CONNACK code {code.value:#x} ({code})"

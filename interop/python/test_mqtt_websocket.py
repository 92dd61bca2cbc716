"""paho-mqtt over WebSocket (transport="websockets"), MQTT 3.1.1 and 5.0: the same broker, the same
topics as over TCP. Runs when $MQTT_WS_URL (ws://host:port/path) is set."""

import pytest

from mqtt_helpers import MQTT_WS_URL, VERSIONS, mqtt_clients, topic  # noqa: F401

pytestmark = [
    pytest.mark.skipif(not MQTT_WS_URL, reason="MQTT_WS_URL not set"),
    pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys()),
]


def test_websocket_and_tcp_clients_share_topics(version, mqtt_clients, topic):
    """A WebSocket subscriber gets a TCP publisher's messages, and the other way round."""
    over_ws = mqtt_clients(version, websocket=True)
    over_ws.connect()
    over_ws.subscribe(f"{topic}/to-ws", 1)
    over_tcp = mqtt_clients(version)
    over_tcp.connect()
    over_tcp.subscribe(f"{topic}/to-tcp", 1)

    for i in range(10):
        over_tcp.publish(f"{topic}/to-ws", f"m{i}", qos=1)
        over_ws.publish(f"{topic}/to-tcp", f"m{i}", qos=1)
    assert [m.text for m in over_ws.wait_for(10, "10 messages over WebSocket")] == [f"m{i}" for i in range(10)]
    assert [m.text for m in over_tcp.wait_for(10, "10 messages over TCP")] == [f"m{i}" for i in range(10)]


def test_a_large_message_crosses_in_several_frames(version, mqtt_clients, topic):
    """300 KiB: the broker sends it in several WebSocket frames, which the client joins."""
    over_ws = mqtt_clients(version, websocket=True)
    over_ws.connect()
    over_ws.subscribe(topic, 1)
    body = bytes(range(256)) * 1200
    over_ws.publish(topic, body, qos=1)
    (got,) = over_ws.wait_for(1, "the large message back")
    assert got.payload == body

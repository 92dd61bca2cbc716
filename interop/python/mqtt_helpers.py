"""Helpers shared by the paho-mqtt scenarios (test_mqtt_*.py).

Every scenario talks to the broker at $MQTT_URL (mqtt://[user:password@]host:port; anonymous when
no user is given) the way an application would. Nothing here sleeps and hopes: every wait is for a
packet or a message that has actually arrived, bounded by INTEROP_WAIT_SECONDS.

Absence is checked with a sentinel: a message published after the ones that must not arrive, on a
topic the subscriber does receive, over the same connection. MQTT keeps the order of messages from
one publisher on one topic [MQTT-4.6.0-5], so once the sentinel is in, anything else would be too.
"""

import os
import threading
import time
import uuid
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from helpers import WAIT_SECONDS

MQTT_URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")

_url = urlsplit(MQTT_URL)
if _url.scheme != "mqtt" or not _url.hostname:
    raise RuntimeError(f"MQTT_URL must look like mqtt://[user:password@]host:port, not {MQTT_URL!r}")
HOST = _url.hostname
PORT = _url.port or 1883
USERNAME = unquote(_url.username) if _url.username else None
PASSWORD = unquote(_url.password) if _url.password else None

# MQTT over WebSocket (test_mqtt_websocket.py), ws://host:port/path; unset: those scenarios skip.
MQTT_WS_URL = os.environ.get("MQTT_WS_URL")

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
VERSIONS = {"v311": V311, "v5": V5}


def unique(prefix):
    """A fresh MQTT-safe token for topics and client ids."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait(done, what, timeout=WAIT_SECONDS):
    """Waits until `done()` is true (the paho network threads do the I/O); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def publish_properties(**fields):
    """MQTT 5 PUBLISH properties, e.g. publish_properties(ResponseTopic="a/b", UserProperty=[...])."""
    props = Properties(PacketTypes.PUBLISH)
    for key, value in fields.items():
        setattr(props, key, value)
    return props


class Message:
    """One delivered PUBLISH, copied out of paho's object (which it reuses)."""

    def __init__(self, msg):
        self.topic = msg.topic
        self.payload = bytes(msg.payload)
        self.qos = msg.qos
        self.retain = bool(msg.retain)
        self.properties = getattr(msg, "properties", None)

    @property
    def text(self):
        return self.payload.decode()

    def prop(self, name, default=None):
        return getattr(self.properties, name, default) if self.properties is not None else default

    def __repr__(self):
        return f"Message({self.topic!r}, {self.payload!r}, qos={self.qos}, retain={self.retain})"


class Client:
    """A paho-mqtt client with its network loop on a thread, and blocking, bounded calls.

    Unexpected disconnects are not retried: the scenario sees them in `disconnects`.
    """

    def __init__(self, version, client_id=None, clean=True, websocket=False):
        self.version = version
        self.client_id = client_id or unique("py")
        kwargs = {"clean_session": clean} if version != V5 else {}
        self.clean = clean
        self.host, self.port = HOST, PORT
        if websocket:
            ws = urlsplit(MQTT_WS_URL)
            self.host, self.port = ws.hostname, ws.port or 80
            kwargs["transport"] = "websockets"
        self.mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=version,
            reconnect_on_failure=False,
            **kwargs,
        )
        if websocket:
            self.mqtt.ws_set_options(path=urlsplit(MQTT_WS_URL).path or "/mqtt")
        if USERNAME is not None:
            self.mqtt.username_pw_set(USERNAME, PASSWORD)
        self.messages = []
        self.disconnects = []
        self.connack = None
        self._subacks = {}
        self._lock = threading.Lock()
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.on_disconnect = self._on_disconnect
        self.connected = False

    # -- callbacks (paho's network thread) -------------------------------------------------------
    def _on_connect(self, _client, _userdata, flags, reason_code, properties):
        self.connack = (bool(flags.session_present), reason_code, properties)

    def _on_message(self, _client, _userdata, msg):
        with self._lock:
            self.messages.append(Message(msg))

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties):
        self._subacks[mid] = list(reason_codes)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties):
        self.disconnects.append(reason_code)

    # -- operations ------------------------------------------------------------------------------
    def connect(self, keepalive=60, session_expiry=None, will=None):
        """Connects and waits for CONNACK; returns session_present. `will` is (topic, payload, qos)
        or (topic, payload, qos, properties)."""
        if will is not None:
            topic, payload, qos, *rest = will
            self.mqtt.will_set(topic, payload, qos, retain=False, properties=rest[0] if rest else None)
        kwargs = {}
        if self.version == V5:
            kwargs["clean_start"] = self.clean
            if session_expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = session_expiry
                kwargs["properties"] = props
        self.connack = None
        self.mqtt.connect(self.host, self.port, keepalive=keepalive, **kwargs)
        self.mqtt.loop_start()
        wait(lambda: self.connack is not None or self.disconnects, f"CONNACK for {self.client_id}")
        if self.connack is None:
            pytest.fail(f"{self.client_id}: connection closed before CONNACK ({self.disconnects})")
        session_present, reason_code, _ = self.connack
        if reason_code.is_failure:
            pytest.fail(f"{self.client_id}: CONNECT refused: {reason_code}")
        self.connected = True
        return session_present

    def subscribe(self, topic_filter, qos=2, **options):
        """Subscribes and waits for SUBACK; returns the granted QoS (or fails on a refusal)."""
        if self.version == V5:
            result, mid = self.mqtt.subscribe(topic_filter, options=SubscribeOptions(qos=qos, **options))
        else:
            result, mid = self.mqtt.subscribe(topic_filter, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"subscribe to {topic_filter!r} not sent: {result}"
        wait(lambda: mid in self._subacks, f"SUBACK for {topic_filter!r}")
        (code,) = self._subacks.pop(mid)
        if code.is_failure:
            pytest.fail(f"subscription to {topic_filter!r} refused: {code}")
        return code.value

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Publishes; for QoS 1 and 2 waits until the broker has acknowledged it (PUBACK/PUBCOMP)."""
        info = self.mqtt.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish to {topic!r} not sent: {info.rc}"
        deadline = time.monotonic() + WAIT_SECONDS
        while not info.is_published():
            if time.monotonic() > deadline:
                pytest.fail(f"publish to {topic!r} (QoS {qos}) not acknowledged within {WAIT_SECONDS}s")
            if self.disconnects:
                pytest.fail(f"{self.client_id} disconnected while publishing: {self.disconnects}")
            time.sleep(0.002)
        return info

    def wait_for(self, count, what=None, topic=None):
        """Waits for `count` messages (on `topic` if given); returns them."""

        def matching():
            with self._lock:
                return [m for m in self.messages if topic is None or m.topic == topic]

        wait(lambda: len(matching()) >= count, what or f"{count} message(s) on {self.client_id}")
        return matching()

    def disconnect(self):
        """A normal DISCONNECT (no will), then stops the network thread."""
        if not self.connected:
            return
        self.connected = False
        self.mqtt.disconnect()
        self.mqtt.loop_stop()

    def abort(self):
        """Drops the TCP connection without DISCONNECT: an abnormal disconnect for the broker."""
        self.connected = False
        self.mqtt.loop_stop()  # the network thread ends without sending anything more
        sock = self.mqtt.socket()
        if sock is not None:
            sock.close()


@pytest.fixture
def mqtt_clients():
    """Makes clients on demand; closes whatever is still connected at the end."""
    made = []

    def make(version, client_id=None, clean=True, websocket=False):
        client = Client(version, client_id=client_id, clean=clean, websocket=websocket)
        made.append(client)
        return client

    yield make
    for client in made:
        try:
            client.disconnect()
        except Exception:  # the scenario's own failure is the one that matters
            pass


@pytest.fixture
def topic(request):
    """A unique topic prefix per test and run: interop/py/<test>/<run>."""
    test = request.node.name.replace("test_mqtt_", "").replace("test_", "")
    test = "".join(c if c.isalnum() else "-" for c in test).strip("-")
    return f"interop/py/{test}/{uuid.uuid4().hex[:8]}"

"""MQTT over TLS and over WebSocket with paho-mqtt, as an application would write it.

- MQTTS with the broker verified against the CA, QoS 1 round trip, MQTT 3.1.1 and 5.0;
- a client that trusts another CA refuses the broker;
- a client certificate and no user name: the broker logs the client in as the certificate's CN
  (RabbitMQ's mqtt.ssl_cert_login; Pigeon's certificate login);
- MQTT over WebSocket (transport="websockets", the broker's path) and over secure WebSocket,
  3.1.1 and 5.0; a message published over WebSocket reaches a subscriber on MQTTS (one broker,
  one topic space, whatever the transport).
"""

import os
import ssl
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from helpers import WAIT_SECONDS
from tls_helpers import Url, client_cert, env, ssl_context

VERSIONS = {"v311": mqtt.MQTTv311, "v5": mqtt.MQTTv5}
# INTEROP_MQTT5=0 leaves MQTT 5.0 out, for brokers without it (RabbitMQ before 3.13).
if os.environ.get("INTEROP_MQTT5", "1") == "0":
    del VERSIONS["v5"]


def wait(done, what):
    deadline = time.monotonic() + WAIT_SECONDS
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_SECONDS}s waiting for {what}")
        time.sleep(0.005)


class Client:
    """paho with its network thread, bounded blocking calls, and the messages it received."""

    def __init__(self, url_var, version=mqtt.MQTTv311, ctx=None, anonymous=False):
        url = env(url_var)
        default_port = {"mqtts": 8883, "ws": 80, "wss": 443}.get(url.split(":", 1)[0], 1883)
        self.url = Url(url, default_port)
        websockets = self.url.scheme in ("ws", "wss")
        self.id = f"py-tls-{uuid.uuid4().hex[:10]}"
        self.mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.id,
            protocol=version,
            transport="websockets" if websockets else "tcp",
            reconnect_on_failure=False,
        )
        if websockets:
            self.mqtt.ws_set_options(path=self.url.path)
        if self.url.scheme in ("mqtts", "wss"):
            self.mqtt.tls_set_context(ctx or ssl_context())
        # `anonymous`: no user name even if the URL has one (the certificate is the identity).
        if self.url.username and not anonymous:
            self.mqtt.username_pw_set(self.url.username, self.url.password)
        self.messages = []
        self.connack = None
        self.subacks = {}
        self.lock = threading.Lock()
        self.mqtt.on_connect = lambda _c, _u, _f, rc, _p: setattr(self, "connack", rc)
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = lambda _c, _u, mid, rcs, _p: self.subacks.__setitem__(mid, rcs)
        self.disconnected = None
        self.mqtt.on_disconnect = lambda _c, _u, _f, rc, _p: setattr(self, "disconnected", rc)

    def _on_message(self, _client, _userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), msg.qos))

    def connect(self):
        self.mqtt.connect(self.url.host, self.url.port, keepalive=30)
        self.mqtt.loop_start()
        wait(
            lambda: self.connack is not None or self.disconnected is not None,
            f"CONNACK on {self.url.url}",
        )
        if self.connack is None:
            pytest.fail(f"{self.url.url} closed the connection before CONNACK: {self.disconnected}")
        if self.connack.is_failure:
            pytest.fail(f"CONNECT over {self.url.url} refused: {self.connack}")
        return self

    def subscribe(self, topic, qos=1):
        _, mid = self.mqtt.subscribe(topic, qos)
        wait(lambda: mid in self.subacks, f"SUBACK for {topic}")
        assert not self.subacks[mid][0].is_failure, f"subscription refused: {self.subacks[mid]}"

    def publish(self, topic, payload, qos=1):
        info = self.mqtt.publish(topic, payload, qos=qos)
        wait(info.is_published, f"PUBACK for {topic}")

    def wait_for(self, count):
        wait(lambda: len(self.messages) >= count, f"{count} message(s) on {self.id}")
        with self.lock:
            return list(self.messages)

    def close(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def clients():
    made = []

    def make(*args, **kwargs):
        c = Client(*args, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.close()
        except Exception:  # the scenario's own failure is the one that matters
            pass


def topic():
    return f"interop/tls/{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("url_var", ["MQTTS_URL", "MQTT_WS_URL", "MQTT_WSS_URL"])
def test_qos1_round_trip(clients, url_var, version):
    t = topic()
    sub = clients(url_var, VERSIONS[version]).connect()
    sub.subscribe(t)
    pub = clients(url_var, VERSIONS[version]).connect()
    for i in range(10):
        pub.publish(t, f"m{i}".encode())
    got = sub.wait_for(10)
    assert [p for _, p, _ in got] == [f"m{i}".encode() for i in range(10)]
    assert all(q == 1 for _, _, q in got)


def test_mqtts_refuses_a_broker_its_ca_did_not_sign(clients):
    c = clients("MQTTS_URL", ctx=ssl_context(ca=env("TLS_OTHER_CA")))
    with pytest.raises(ssl.SSLCertVerificationError):
        c.mqtt.connect(c.url.host, c.url.port, keepalive=30)


def test_client_certificate_without_user_name_logs_in(clients):
    cert, key, _user = client_cert()
    t = topic()
    ctx = ssl_context(cert=cert, key=key)
    sub = clients("MQTTS_URL", ctx=ctx, anonymous=True).connect()
    sub.subscribe(t)
    pub = clients("MQTTS_URL", ctx=ctx, anonymous=True).connect()
    pub.publish(t, b"from a certificate")
    assert sub.wait_for(1)[0][1] == b"from a certificate"


def test_websocket_publisher_reaches_an_mqtts_subscriber(clients):
    t = topic()
    sub = clients("MQTTS_URL").connect()
    sub.subscribe(t)
    pub = clients("MQTT_WS_URL").connect()
    pub.publish(t, b"across transports")
    assert sub.wait_for(1)[0][1] == b"across transports"

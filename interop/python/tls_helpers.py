"""Helpers shared by the TLS and WebSocket scenarios (tls_*.py).

interop/run.sh runs them when INTEROP_TLS=1, with the certificates it made
(interop/tls/make-certs.sh) and the broker's TLS and WebSocket listeners in the environment:

    AMQPS_URL         amqps://guest:guest@localhost:PORT/%2f
    MQTTS_URL         mqtts://localhost:PORT
    MQTT_WS_URL       ws://127.0.0.1:PORT/mqtt   (the path is the broker's: /mqtt for Pigeon,
    MQTT_WSS_URL      wss://localhost:PORT/mqtt   /ws for RabbitMQ's web_mqtt)
    TLS_CA_FILE       the CA that signed the broker's certificate (and the client's)
    TLS_CLIENT_CERT, TLS_CLIENT_KEY   a client certificate whose CN is TLS_CERT_USER, a user the
                      broker knows (SASL EXTERNAL, MQTT certificate login)
    TLS_OTHER_CA      an unrelated CA (a client trusting only it must refuse the broker)

A scenario whose variable is missing is skipped, so that a broker without, say, WebSocket still
runs the others.
"""

import os
import ssl
from urllib.parse import unquote, urlsplit

import pytest


def env(name):
    """The variable's value, or a skip of the scenario that needs it."""
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set")
    return value


def ssl_context(ca=None, cert=None, key=None):
    """A client context that verifies the broker against `ca` (default TLS_CA_FILE), as an
    application would, optionally presenting a client certificate."""
    ctx = ssl.create_default_context(cafile=ca or env("TLS_CA_FILE"))
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def client_cert():
    """(certificate, key, user name in its CN) of the test client certificate."""
    return env("TLS_CLIENT_CERT"), env("TLS_CLIENT_KEY"), env("TLS_CERT_USER")


class Url:
    """A broker URL taken apart (scheme, host, port, credentials, path)."""

    def __init__(self, url, default_port):
        u = urlsplit(url)
        self.url = url
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or default_port
        self.username = unquote(u.username) if u.username else None
        self.password = unquote(u.password) if u.password else None
        self.path = u.path or "/"

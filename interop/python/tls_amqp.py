"""AMQP over TLS with pika, as an application would write it.

- the broker's certificate is verified against the CA (server_hostname "localhost"), and a
  client that trusts another CA refuses the broker;
- a client certificate with SASL EXTERNAL logs in as the user named in its CN (RabbitMQ's
  rabbitmq_auth_mechanism_ssl with ssl_cert_login_from = common_name);
- EXTERNAL without a certificate is refused; PLAIN still works over TLS with a certificate.
"""

import ssl
import uuid
from urllib.parse import unquote

import pika
import pytest
from pika.exceptions import AMQPConnectionError, ProbableAuthenticationError

from helpers import WAIT_SECONDS, wait_until
from tls_helpers import Url, client_cert, env, ssl_context


def parameters(ctx, credentials=None):
    """Connection parameters for AMQPS_URL with TLS context `ctx`."""
    url = Url(env("AMQPS_URL"), 5671)
    vhost = url.path[1:] or "/"
    return pika.ConnectionParameters(
        host=url.host,
        port=url.port,
        virtual_host=unquote(vhost),
        credentials=credentials
        or pika.PlainCredentials(url.username or "guest", url.password or "guest"),
        ssl_options=pika.SSLOptions(ctx, server_hostname=url.host),
        socket_timeout=WAIT_SECONDS,
        stack_timeout=WAIT_SECONDS,
        blocked_connection_timeout=WAIT_SECONDS,
        heartbeat=15,
        connection_attempts=1,
    )


def round_trip(conn):
    """Declares a server-named exclusive queue, publishes to it and reads the message back."""
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    body = f"over tls {uuid.uuid4().hex}"
    ch.basic_publish("", queue, body.encode())
    got = []
    ch.basic_consume(queue, lambda _c, _m, _p, b: got.append(b.decode()), auto_ack=True)
    wait_until([conn], lambda: got, f"the message on {queue}")
    assert got == [body]


def test_pika_over_tls_verifies_the_broker_and_round_trips():
    conn = pika.BlockingConnection(parameters(ssl_context()))
    try:
        sock = conn._impl._transport._sock
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        round_trip(conn)
    finally:
        conn.close()


def test_pika_refuses_a_broker_its_ca_did_not_sign():
    ctx = ssl_context(ca=env("TLS_OTHER_CA"))
    # pika lets the handshake's own error through (ssl.SSLCertVerificationError).
    with pytest.raises((AMQPConnectionError, ssl.SSLError)) as refused:
        pika.BlockingConnection(parameters(ctx))
    assert "certificate" in str(refused.value).lower() or isinstance(
        refused.value, AMQPConnectionError
    )


def test_client_certificate_with_external_logs_in_as_its_common_name():
    cert, key, _user = client_cert()
    ctx = ssl_context(cert=cert, key=key)
    conn = pika.BlockingConnection(
        parameters(ctx, credentials=pika.credentials.ExternalCredentials())
    )
    try:
        # pika sends EXTERNAL only when the broker offers it; the login going through is the check.
        round_trip(conn)
    finally:
        conn.close()


def test_external_without_a_client_certificate_is_refused():
    with pytest.raises((ProbableAuthenticationError, AMQPConnectionError)):
        pika.BlockingConnection(
            parameters(ssl_context(), credentials=pika.credentials.ExternalCredentials())
        )


def test_plain_login_over_tls_works_with_a_client_certificate_too():
    cert, key, _user = client_cert()
    conn = pika.BlockingConnection(parameters(ssl_context(cert=cert, key=key)))
    try:
        round_trip(conn)
    finally:
        conn.close()

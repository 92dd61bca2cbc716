"""Prometheus scrapes of Pigeon read by the official Python client's parser
(prometheus_client.parser.text_string_to_metric_families): `/metrics` and
`/metrics/per-object` parse, carry RabbitMQ's names, types, HELP texts and labels, and their
counters move with pika traffic.

The endpoint is $PROMETHEUS_URL (interop/run.sh sets it for the broker it starts); without it
these scenarios are skipped. Counters are compared before and after this scenario's own
traffic, since other scenarios use the same broker.
"""

import os
import urllib.request

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import WAIT_SECONDS, connect

PROMETHEUS_URL = os.environ.get("PROMETHEUS_URL")

pytestmark = pytest.mark.skipif(not PROMETHEUS_URL, reason="PROMETHEUS_URL not set")


def scrape(path="/metrics"):
    """GETs `path` and parses it: {family name: family}."""
    with urllib.request.urlopen(PROMETHEUS_URL + path, timeout=WAIT_SECONDS) as response:
        assert response.status == 200
        content_type = response.headers["Content-Type"]
        assert content_type.startswith("text/plain; version=0.0.4"), content_type
        text = response.read().decode("utf-8")
    families = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in families, f"family {family.name} written twice"
        families[family.name] = family
    return families


def value(families, family, sample=None, **labels):
    """The value of the sample of `family` (named `sample`, default the family's own name or
    its `_total`) whose labels include `labels`."""
    names = {sample} if sample else {family, family + "_total"}
    for s in families[family].samples:
        if s.name in names and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {names} {labels} in {family}")


# The parser names a counter family without its `_total`; `untyped` reads as `unknown`.
EXPECTED_TYPES = {
    "rabbitmq_identity_info": "unknown",
    "rabbitmq_build_info": "unknown",
    "rabbitmq_connections": "gauge",
    "rabbitmq_channels": "gauge",
    "rabbitmq_queues": "gauge",
    "rabbitmq_consumers": "gauge",
    "rabbitmq_connections_opened": "counter",
    "rabbitmq_queues_declared": "counter",
    "rabbitmq_queue_messages_ready": "gauge",
    "rabbitmq_queue_messages_unacked": "gauge",
    "rabbitmq_global_messages_received": "counter",
    "rabbitmq_global_messages_routed": "counter",
    "rabbitmq_global_messages_confirmed": "counter",
    "rabbitmq_global_messages_delivered_get_manual_ack": "counter",
    "rabbitmq_global_messages_acknowledged": "counter",
    "rabbitmq_global_publishers": "gauge",
    "rabbitmq_message_size_bytes": "histogram",
    "rabbitmq_process_resident_memory_bytes": "gauge",
    "rabbitmq_process_open_fds": "gauge",
    "rabbitmq_resident_memory_limit_bytes": "gauge",
    "rabbitmq_erlang_uptime_seconds": "gauge",
    "rabbitmq_alarms_memory_used_watermark": "unknown",
    "pigeon_mqtt_connections": "gauge",
    "pigeon_mqtt_sessions": "gauge",
    "pigeon_mqtt_messages_received": "counter",
    "pigeon_queue_messages_paged_out": "gauge",
    "pigeon_alarm": "gauge",
}


def test_aggregated_families_have_rabbitmq_types_help_and_labels():
    families = scrape()
    for name, kind in EXPECTED_TYPES.items():
        assert name in families, f"{name} missing"
        assert families[name].type == kind, f"{name}: {families[name].type}, not {kind}"
    for family in families.values():
        assert family.documentation, f"{family.name} has no HELP"
        assert family.samples, f"{family.name} has no sample"
    identity = families["rabbitmq_identity_info"].samples[0].labels
    for label in ("rabbitmq_node", "rabbitmq_cluster", "rabbitmq_cluster_permanent_id"):
        assert identity.get(label), label
    assert identity["rabbitmq_endpoint"] == "aggregated"
    build = families["rabbitmq_build_info"].samples[0].labels
    assert build["product_name"] == "Pigeon"
    assert "rabbitmq_version" in build
    # Per-protocol counters, and per protocol and queue type for what happens at a queue.
    protocols = {s.labels["protocol"] for s in families["rabbitmq_global_messages_received"].samples}
    assert {"amqp091", "mqtt311", "mqtt50"} <= protocols
    for s in families["rabbitmq_global_messages_delivered"].samples:
        assert set(s.labels) == {"protocol", "queue_type"}
    # The aggregated queue families have no per-queue labels.
    for s in families["rabbitmq_queue_messages_ready"].samples:
        assert s.labels == {}
    # A histogram's buckets end with +Inf and equal its count.
    sizes = [s for s in families["rabbitmq_message_size_bytes"].samples
             if s.labels.get("protocol") == "amqp091"]
    inf = [s.value for s in sizes if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"]
    count = [s.value for s in sizes if s.name.endswith("_count")]
    assert inf == count and len(inf) == 1
    assert value(families, "rabbitmq_process_resident_memory_bytes") > 0


def test_counters_and_per_object_samples_follow_amqp_traffic(admin, name):
    queue = admin.queue(name("q"))
    before = scrape()
    received = value(before, "rabbitmq_global_messages_received", protocol="amqp091")
    routed = value(before, "rabbitmq_global_messages_routed", protocol="amqp091")
    gets = value(
        before, "rabbitmq_global_messages_delivered_get_manual_ack",
        protocol="amqp091", queue_type="rabbit_classic_queue",
    )
    sizes = value(before, "rabbitmq_message_size_bytes", "rabbitmq_message_size_bytes_count",
                  protocol="amqp091")

    conn = connect()
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for i in range(5):
            ch.basic_publish("", queue, f"m{i}".encode(), pika.BasicProperties())

        per_object = scrape("/metrics/per-object")
        identity = per_object["rabbitmq_identity_info"].samples[0].labels
        assert identity["rabbitmq_endpoint"] == "per-object"
        assert value(per_object, "rabbitmq_queue_messages_ready", vhost="/", queue=queue) == 5
        assert value(per_object, "rabbitmq_queue_messages_published", vhost="/", queue=queue) == 5
        # One sample per queue: this queue's appears once.
        mine = [s for s in per_object["rabbitmq_queue_messages_ready"].samples
                if s.labels.get("queue") == queue]
        assert len(mine) == 1

        method, _, body = ch.basic_get(queue, auto_ack=False)
        assert body == b"m0"
        ch.basic_ack(method.delivery_tag)
    finally:
        conn.close()

    after = scrape()
    assert value(after, "rabbitmq_global_messages_received", protocol="amqp091") - received == 5
    assert value(after, "rabbitmq_global_messages_routed", protocol="amqp091") - routed == 5
    assert value(
        after, "rabbitmq_global_messages_delivered_get_manual_ack",
        protocol="amqp091", queue_type="rabbit_classic_queue",
    ) - gets == 1
    assert value(after, "rabbitmq_message_size_bytes", "rabbitmq_message_size_bytes_count",
                 protocol="amqp091") - sizes == 5
    assert value(after, "rabbitmq_queue_messages_ready") >= 4

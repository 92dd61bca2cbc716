"""(a) A durable task queue with manual acks, prefetch 1 and two workers."""

import pika
import pytest

from helpers import connect, wait_until

PERSISTENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)


class Worker:
    """A worker with prefetch 1 that holds each task until the test loop acks it."""

    def __init__(self, conn, queue, label):
        self.conn = conn
        self.label = label
        self.channel = conn.channel()
        self.channel.basic_qos(prefetch_count=1)
        self.holding = []  # delivered, not yet acked
        self.done = []  # (body, redelivered) of acked tasks
        self.max_holding = 0
        self.channel.basic_consume(queue, self._on_task)

    def _on_task(self, _ch, method, properties, body):
        self.holding.append((method, properties, body.decode()))
        self.max_holding = max(self.max_holding, len(self.holding))

    def ack_all(self):
        for method, _, body in self.holding:
            self.channel.basic_ack(method.delivery_tag)
            self.done.append((body, method.redelivered))
        self.holding.clear()


def test_tasks_done_exactly_once_spread_over_two_workers(connections, admin, name):
    n = 40
    queue = admin.queue(name("tasks"), durable=True)
    workers = [Worker(connections(), queue, "w1"), Worker(connections(), queue, "w2")]

    producer = connections().channel()
    for i in range(n):
        producer.basic_publish("", queue, f"task-{i}".encode(), PERSISTENT)

    def all_done():
        for w in workers:
            for _, properties, _ in w.holding:
                assert properties.delivery_mode == 2, "task lost its persistent delivery mode"
            w.ack_all()
        return sum(len(w.done) for w in workers) >= n

    wait_until([w.conn for w in workers], all_done, f"{n} tasks to be done")

    bodies = sorted(body for w in workers for body, _ in w.done)
    assert bodies == sorted(f"task-{i}" for i in range(n)), "tasks not done exactly once"
    for w in workers:
        assert w.done, f"worker {w.label} got no task: work was not spread"
        assert w.max_holding == 1, f"worker {w.label} held {w.max_holding} unacked tasks despite prefetch 1"
        assert not any(redelivered for _, redelivered in w.done), "a task was redelivered"

    ok = admin.channel.queue_declare(queue, passive=True)
    assert ok.method.message_count == 0, f"{ok.method.message_count} tasks left in the queue"

    # Durability is recorded: re-declaring the queue as transient is refused.
    other = connect()
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            other.channel().queue_declare(queue, durable=False)
        assert refused.value.reply_code == 406, refused.value
    finally:
        other.close()


def test_unacked_task_of_a_dead_worker_goes_to_the_other(connections, admin, name):
    queue = admin.queue(name("tasks"), durable=True)
    w1 = Worker(connections(), queue, "w1")

    producer = connections().channel()
    producer.basic_publish("", queue, b"precious", PERSISTENT)

    wait_until([w1.conn], lambda: w1.holding, "worker 1 to receive the task")
    method, _, body = w1.holding[0]
    assert body == "precious"
    assert method.redelivered is False, "first delivery flagged redelivered"

    w2 = Worker(connections(), queue, "w2")
    # While worker 1 holds the task, worker 2 gets nothing.
    w2.conn.process_data_events(time_limit=0.3)
    assert not w2.holding, "task delivered twice while still unacked"

    w1.conn.close()  # the worker dies without acking
    wait_until([w2.conn], lambda: w2.holding, "the task to be redelivered to worker 2")
    method, _, body = w2.holding[0]
    assert body == "precious"
    assert method.redelivered is True, "redelivered task not flagged redelivered=true"
    w2.ack_all()

    ok = admin.channel.queue_declare(queue, passive=True)
    assert ok.method.message_count == 0, f"{ok.method.message_count} tasks left in the queue"

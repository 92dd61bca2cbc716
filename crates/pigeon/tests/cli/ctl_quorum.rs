//! `pigeon ctl` and quorum queues on a node without `[cluster]` (a cluster of one): a vhost's
//! default queue type (`add_vhost --default-queue-type`, `update_vhost_metadata`,
//! `list_vhosts name default_queue_type`) and a quorum queue in `list_queues name type leader`.

use crate::ctl_support::ctl;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, within, DataDir, TestBroker};

/// `list_vhosts name default_queue_type` has `v` with `kind`.
async fn listed(broker: &TestBroker, v: &str, kind: &str) {
    let out = ctl(broker, &["list_vhosts", "name", "default_queue_type", "-s"])
        .await
        .ok();
    assert!(
        out.lines().any(|l| l == format!("{v}\t{kind}")),
        "{v} {kind}: {out}"
    );
}

#[tokio::test]
async fn ctl_sets_default_queue_types_and_lists_single_node_quorum_queues() {
    let data = DataDir::with(|c| c.fsync = false);
    let Some(broker) = data.start().await else {
        return;
    };
    let v = unique("ctl-dqt");
    ctl(
        &broker,
        &["add_vhost", &v, "--default-queue-type", "quorum"],
    )
    .await
    .ok();
    listed(&broker, &v, "quorum").await;
    ctl(
        &broker,
        &[
            "update_vhost_metadata",
            &v,
            "--default-queue-type",
            "classic",
        ],
    )
    .await
    .ok();
    listed(&broker, &v, "classic").await;

    let (conn, ch) = lp::connect_channel(&broker).await;
    let q = unique("ctl-qq");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    within(
        "queue.declare-ok",
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        ),
    )
    .await
    .unwrap();
    let line = within("the queue's leader", async {
        loop {
            let out = ctl(&broker, &["list_queues", "name", "type", "leader", "-s"])
                .await
                .ok();
            if let Some(line) = out.lines().find(|l| l.starts_with(&format!("{q}\t"))) {
                if line.contains("pigeon@") {
                    return line.to_string();
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(line.starts_with(&format!("{q}\tquorum\tpigeon@")), "{line}");
    conn.close(200, "done".into()).await.unwrap();
}

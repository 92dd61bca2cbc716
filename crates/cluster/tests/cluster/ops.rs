//! Operations (issue 13, item 6): the broker's questions to its peers over the cluster link
//! (`Request::Ops`, answered by the registered `OpsHandler`), and handing the metadata group's
//! leadership over for maintenance (openraft 0.9 has no transfer: no election, no heartbeats).

use crate::common;

use common::{bounded, vhost, TestCluster};
use pigeon_cluster::net::BoxFuture;
use pigeon_cluster::{ClusterError, MetaResponse, OpsHandler};
use std::sync::Arc;
use std::time::Duration;

/// Answers with its node's name and the question, reversed.
struct Echo(String);

impl OpsHandler for Echo {
    fn handle(&self, request: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        let name = self.0.clone();
        Box::pin(async move {
            if request == b"fail" {
                return Err(format!("{name} refuses"));
            }
            let mut answer = name.into_bytes();
            answer.push(b':');
            answer.extend(request.iter().rev());
            Ok(answer)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_answer_the_brokers_questions_and_a_stopped_one_is_reported() {
    let mut cluster = TestCluster::start(3).await;
    cluster.leader().await;
    for (_, n) in cluster.running() {
        n.cluster().set_ops_handler(Arc::new(Echo(n.name.clone())));
    }
    let timeout = Duration::from_secs(2);
    let asker = cluster.nodes[0].cluster().clone();
    let answers = bounded("the peers' answers", asker.ops_others(b"abc", timeout)).await;
    assert_eq!(
        answers.len(),
        2,
        "every other member is asked, not the asker"
    );
    for (member, answer) in &answers {
        assert_ne!(member.name, cluster.nodes[0].name);
        let text = String::from_utf8(answer.as_ref().unwrap().clone()).unwrap();
        assert_eq!(text, format!("{}:cba", member.name));
    }
    // The handler's error comes back as the peer's refusal.
    let addr = cluster.nodes[1].addr.to_string();
    let refused = asker.ops_call(&addr, b"fail".to_vec(), timeout).await;
    assert!(
        matches!(&refused, Err(ClusterError::Remote { message, .. }) if message.contains("refuses")),
        "{refused:?}"
    );
    // A stopped member is an error in its place, within the timeout; the other still answers.
    cluster.stop(2).await;
    let answers = bounded(
        "the answers with one node down",
        asker.ops_others(b"x", timeout),
    )
    .await;
    assert_eq!(answers.len(), 2);
    let down = &cluster.nodes[2].name;
    for (member, answer) in &answers {
        assert_eq!(
            answer.is_err(),
            &member.name == down,
            "{member:?}: {answer:?}"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_leader_hands_the_metadata_group_over_and_takes_part_again_once_revived() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let old = cluster.nodes[leader].cluster().clone();
    let new = bounded(
        "the hand-over",
        old.hand_over_leadership(Duration::from_secs(15)),
    )
    .await
    .unwrap();
    let new = new.expect("the leader moved");
    assert_ne!(new, cluster.nodes[leader].name);
    // The others agree, and writes go on (through the old leader too, forwarded).
    let now = cluster.leader().await;
    assert_ne!(now, leader);
    assert_eq!(old.write(vhost(1)).await.unwrap(), MetaResponse::Done);
    // A follower hands over nothing.
    assert_eq!(
        old.hand_over_leadership(Duration::from_secs(1))
            .await
            .unwrap(),
        None
    );
    // Revived, it may lead again: once the current leader hands over in turn, the other two
    // (the revived node among them) elect.
    old.resume_leadership();
    let second = cluster.nodes[now].cluster().clone();
    bounded(
        "the second hand-over",
        second.hand_over_leadership(Duration::from_secs(15)),
    )
    .await
    .unwrap();
    second.resume_leadership();
    cluster.leader().await;
    assert_eq!(old.write(vhost(2)).await.unwrap(), MetaResponse::Done);
    cluster.shutdown().await;
}

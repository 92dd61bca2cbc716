//! Leaderships of quorum queues moved (issue 13, item 6): away from a node being drained
//! (RabbitMQ's `rabbit_maintenance:transfer_leadership_of_quorum_queues`), and spread over the
//! running nodes (`rebalance`, `rabbit_amqqueue:rebalance`).
//!
//! openraft 0.9 has no leadership transfer (0.10's `trigger().transfer_leader`), so the leader
//! stops heartbeating and standing for election (its followers' leader lease then runs out) and
//! the chosen member is asked (`QuorumAsk::Elect`, membership.rs) to stand for election at once,
//! again every second until it leads or the wait is over. Idle groups run no election timers,
//! so without the ask nobody would stand.

use super::membership::{ask_peer, registry, running, MembersError, QuorumAsk, MOVE_WAIT};
use super::{QuorumMember, QuorumRegistry};
use pigeon_cluster::net::NodeState;
use pigeon_cluster::Cluster;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Hands the leadership of `member`'s group, led here, to its member on `to`: this member stops
/// heartbeating and standing for election, `to` is asked to stand, every second, until it
/// leads or [`MOVE_WAIT`] is over. `keep_away`: this member stays a non-candidate afterwards
/// (drain; revive undoes it), else it stands again once the leadership moved.
pub(super) async fn transfer_here(
    cluster: &Cluster,
    member: &QuorumMember,
    to: &str,
    keep_away: bool,
) -> Result<(), MembersError> {
    let qq = member.local().ok_or(MembersError::NotLeader(None))?;
    if !qq.is_leader() {
        return Err(MembersError::NotLeader(qq.leader_name()));
    }
    let (vhost, name) = member.id();
    qq.stop_leading(true);
    let deadline = Instant::now() + MOVE_WAIT;
    let mut asked = Instant::now() - Duration::from_secs(1);
    let moved = loop {
        if !qq.is_leader() && qq.leader().is_some() {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        if asked.elapsed() >= Duration::from_secs(1) {
            asked = Instant::now();
            let ask = QuorumAsk::Elect {
                vhost: vhost.to_string(),
                name: name.to_string(),
            };
            if let Err(e) = ask_peer(cluster, to, &ask).await {
                tracing::debug!(queue = %name, %to, error = %e, "quorum queue: the new leader could not stand yet");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if !keep_away || !moved {
        qq.stop_leading(false);
    }
    if moved {
        tracing::info!(queue = %name, vhost = %vhost, new_leader = ?qq.leader_name(), "quorum queue: leadership handed over");
        Ok(())
    } else {
        Err(MembersError::Unavailable(format!(
            "queue '{name}' in vhost '{vhost}': {to} did not take the leadership within {MOVE_WAIT:?}"
        )))
    }
}

/// The running voters of `member`'s group other than this node, fewest leaderships first
/// (`load`), then by name.
fn successors(
    cluster: &Cluster,
    member: &QuorumMember,
    load: &HashMap<String, usize>,
) -> Vec<String> {
    let Some(qq) = member.local() else {
        return Vec::new();
    };
    let me = cluster.name();
    let mut others: Vec<String> = qq
        .voter_names()
        .into_iter()
        .filter(|n| n != me && running(cluster, n))
        .collect();
    others.sort_by(|a, b| {
        load.get(a)
            .unwrap_or(&0)
            .cmp(load.get(b).unwrap_or(&0))
            .then_with(|| a.cmp(b))
    });
    others
}

/// Drain: moves the leadership of every quorum queue led here to another running member
/// (RabbitMQ's `rabbit_maintenance:transfer_leadership_of_quorum_queues`) and keeps this
/// node's members from standing for election until [`resume`]. Returns how many moved, and a
/// warning for each that did not (the node is drained all the same).
pub(crate) async fn hand_over(cluster: &Cluster) -> (usize, Vec<String>) {
    let Some(registry) = registry(cluster) else {
        return (0, Vec::new());
    };
    let members = registry.list();
    let mut load: HashMap<String, usize> = HashMap::new();
    let mut led = Vec::new();
    for m in &members {
        if let Some(qq) = m.local() {
            if qq.is_leader() {
                led.push(Arc::clone(m));
            } else {
                qq.stop_leading(true);
            }
        }
    }
    let mut moves = tokio::task::JoinSet::new();
    for m in led {
        let to = successors(cluster, &m, &load).into_iter().next();
        let Some(to) = to else {
            let (vhost, name) = m.id();
            if let Some(qq) = m.local() {
                qq.stop_leading(true);
            }
            moves.spawn(std::future::ready(Err(format!(
                "queue '{name}' in vhost '{vhost}': no other running member to hand the leadership to"
            ))));
            continue;
        };
        *load.entry(to.clone()).or_default() += 1;
        let cluster = cluster.clone();
        moves.spawn(async move {
            transfer_here(&cluster, &m, &to, true)
                .await
                .map_err(|e| e.to_string())
        });
    }
    let (mut moved, mut warnings) = (0, Vec::new());
    while let Some(done) = moves.join_next().await {
        match done {
            Ok(Ok(())) => moved += 1,
            Ok(Err(e)) => warnings.push(e),
            Err(e) => warnings.push(e.to_string()),
        }
    }
    tracing::info!(
        moved,
        failed = warnings.len(),
        "quorum queues: leaderships handed over"
    );
    (moved, warnings)
}

/// Revive: this node's members stand for election again.
pub(crate) fn resume(cluster: &Cluster) {
    if let Some(registry) = registry(cluster) {
        for m in registry.list() {
            if let Some(qq) = m.local() {
                qq.stop_leading(false);
            }
        }
    }
}

/// Which node leads each quorum queue, as this node sees it (a queue with no member here is
/// asked of nobody: its leader is unknown here).
fn leaders(registry: &QuorumRegistry) -> Vec<(Arc<QuorumMember>, Option<String>)> {
    registry
        .list()
        .into_iter()
        .map(|m| {
            let leader = m.leader();
            (m, leader)
        })
        .collect()
}

/// `rebalance quorum`: moves leaderships from the nodes that lead more than their share of the
/// quorum queues to the running members that lead fewest (RabbitMQ's
/// `rabbit_amqqueue:rebalance`), one queue at a time. The leaders per node afterwards.
pub(crate) async fn rebalance(
    cluster: &Cluster,
    vhost_pattern: &regex::Regex,
    queue_pattern: &regex::Regex,
) -> Result<HashMap<String, usize>, MembersError> {
    let registry = registry(cluster)
        .ok_or_else(|| MembersError::Unavailable("no quorum queues registry".into()))?;
    let queues: Vec<(Arc<QuorumMember>, Option<String>)> = leaders(&registry)
        .into_iter()
        .filter(|(m, _)| {
            let (v, n) = m.id();
            vhost_pattern.is_match(v) && queue_pattern.is_match(n)
        })
        .collect();
    let nodes: Vec<String> = cluster
        .node_states()
        .into_iter()
        .filter(|(_, s)| *s == NodeState::Up)
        .map(|(n, _)| n)
        .collect();
    let mut load: HashMap<String, usize> = nodes.iter().map(|n| (n.clone(), 0)).collect();
    for (_, leader) in &queues {
        if let Some(l) = leader {
            *load.entry(l.clone()).or_default() += 1;
        }
    }
    let share = queues.len().div_ceil(nodes.len().max(1));
    for (m, leader) in queues {
        let Some(from) = leader else { continue };
        if load.get(&from).copied().unwrap_or(0) <= share {
            continue;
        }
        let candidates: Vec<String> = m
            .members()
            .into_iter()
            .filter(|n| *n != from && running(cluster, n))
            .collect();
        let Some(to) = candidates
            .into_iter()
            .min_by_key(|n| (load.get(n).copied().unwrap_or(0), n.clone()))
        else {
            continue;
        };
        if load.get(&to).copied().unwrap_or(0) + 1 > share {
            continue;
        }
        let (vhost, name) = m.id();
        let moved = if from == cluster.name() {
            transfer_here(cluster, &m, &to, false).await
        } else {
            let ask = QuorumAsk::Transfer {
                vhost: vhost.to_string(),
                name: name.to_string(),
                to: to.clone(),
            };
            ask_peer(cluster, &from, &ask).await.map(|_| ())
        };
        match moved {
            Ok(()) => {
                *load.entry(from).or_default() -= 1;
                *load.entry(to).or_default() += 1;
            }
            Err(e) => {
                tracing::warn!(queue = %name, vhost = %vhost, error = %e, "rebalance: leadership not moved")
            }
        }
    }
    Ok(load)
}

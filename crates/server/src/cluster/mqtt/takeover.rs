//! A CONNECT's takeover across the cluster: every other node that is up is asked to let go of
//! the client id, and the one that held a persistent session hands it over.

use super::*;

/// Asks every other node that is up to let go of `client_id` (see [`MqttRequest::TakeOver`]);
/// the persistent session one of them handed over, if any.
pub(crate) async fn take_over(
    cluster: &Cluster,
    vhost: &str,
    client_id: &str,
    clean: bool,
) -> Option<SessionState> {
    let f = Forwarder::of(cluster)?;
    let request = forward::ToNode::Mqtt(MqttRequest::TakeOver {
        vhost: vhost.to_string(),
        client_id: client_id.to_string(),
        clean,
    });
    let body = match postcard::to_stdvec(&request) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("cluster: cannot encode an MQTT takeover: {e}");
            return None;
        }
    };
    let asks = f.up_peers().into_iter().map(|node| {
        let body = body.clone();
        async move {
            match cluster.forward(&node, body, TAKEOVER_TIMEOUT).await {
                Ok(bytes) => match postcard::from_bytes::<forward::FromNode>(&bytes) {
                    Ok(forward::FromNode::Mqtt(MqttAnswer::Session(s))) => s,
                    _ => None,
                },
                Err(e) => {
                    tracing::debug!(%node, "cluster: MQTT takeover not answered: {e}");
                    None
                }
            }
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    if let Some(moved) = answers.into_iter().flatten().next() {
        return Some(moved);
    }
    // No node had it (its node is lost, or it never left this one): the subscriptions the
    // metadata group knows of it (`mqtt_sessions.rs`), without messages (a replicated queue
    // keeps them itself), once this node has applied an end written elsewhere.
    if !clean {
        f.catch_up_before_taking(cluster, vhost, client_id).await;
    }
    let subscriptions = f.mqtt_replicated(vhost, client_id);
    (!clean && !subscriptions.is_empty()).then(|| SessionState {
        subscriptions,
        messages: Vec::new(),
        inbound_qos2: Vec::new(),
    })
}

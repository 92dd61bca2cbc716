//! The read barrier on an AMQP connection (issue 13 item 2, `cluster/barrier.rs`): a frame
//! whose lookup missed on a clustered node waits for the node to catch up with the metadata
//! leader, then is handled once more, and only that second answer is sent.
//!
//! The wait is the connection's `meta_wait` (as a topology change proposed to the cluster):
//! no frame is read meanwhile, so the client's methods keep their order. What waits:
//!
//! - a channel method answered 404 NOT_FOUND or 403 ACCESS_REFUSED (a passive declare, a bind,
//!   a consume, a get, a publish to a missing exchange...): such an answer is made before
//!   anything changes, so handling the method again is safe;
//! - `basic.publish` to an exchange with no bindings here (or to the default exchange with no
//!   queue of that name here) while this node holds metadata entries it has not applied
//!   (`Cluster::metadata_pending`): a binding committed through another node would otherwise
//!   route the message nowhere, silently;
//! - `connection.open` of a vhost missing here (or one the user has no permission for), and
//!   `connection.start-ok` of a user missing here.
//!
//! A frame handled again never waits a second time.

use super::Connection;
use crate::amqp::channel::{Channel, ConnCtx};
use crate::amqp::error::AmqpResult;
use crate::amqp::replicated::MetaDone;
use amqp_wire::{Frame, Method, ReplyCode};

/// Whether the channel method `method`, answered `result`, should be answered again after the
/// node caught up. May undo the method's one effect that allows it: a publish's pending state.
pub(super) fn channel_method_waits(
    ctx: &ConnCtx,
    ch: &mut Channel,
    method: &Method,
    result: &AmqpResult,
) -> bool {
    let Some(cluster) = &ctx.cluster else {
        return false;
    };
    if ch.meta_wait.is_some() {
        return false;
    }
    match result {
        Err(e) => {
            !e.is_connection_error()
                && matches!(e.code, ReplyCode::NotFound | ReplyCode::AccessRefused)
        }
        Ok(()) => {
            if !matches!(method, Method::BasicPublish(_)) || !cluster.metadata_pending() {
                return false;
            }
            let Some(p) = &ch.publish else {
                return false;
            };
            let routes_nowhere = if p.exchange.name.is_empty() {
                ctx.vhost.queue(p.routing_key.as_str()).is_err()
            } else {
                p.exchange.binding_count() == 0
            };
            if routes_nowhere {
                // Taken again once caught up; its content frames are not read meanwhile.
                ch.publish = None;
            }
            routes_nowhere
        }
    }
}

impl Connection {
    /// Whether a channel-0 method should wait for the barrier before it is handled: the open of
    /// a vhost, or the login of a user, missing here.
    pub(super) fn connection_method_waits(&self, method: &Method) -> bool {
        if self.server.cluster.is_none() || self.retrying {
            return false;
        }
        match method {
            Method::ConnectionOpen(m) => {
                let name = m.virtual_host.as_str();
                let user = self.user.as_deref().unwrap_or("");
                self.server.broker.vhost(name).is_none()
                    || !crate::auth::may_open_vhost(&self.server.broker, user, name)
            }
            Method::ConnectionStartOk(m) => {
                crate::amqp::auth::login_name(m.mechanism.as_str(), &m.response)
                    .is_some_and(|user| self.server.broker.access().user(&user).is_none())
            }
            _ => false,
        }
    }

    /// Handles `frame` again once the node caught up with the metadata leader (or could not:
    /// no leader, timed out), in the connection's `meta_wait`.
    pub(super) fn wait_for_barrier(&mut self, frame: Frame) {
        let Some(cluster) = self.server.cluster.clone() else {
            return;
        };
        self.retry = Some(Box::new(frame));
        self.meta_wait = Some(Box::pin(async move {
            crate::cluster::barrier::catch_up(&cluster).await;
            MetaDone {
                channel: 0,
                reply: None,
                result: Ok(()),
                class_id: 0,
                method_id: 0,
                what: String::new(),
            }
        }));
    }

    /// The barrier ended: the frame that waited for it is handled again, for good. False if
    /// none waited (the `meta_wait` was another's).
    pub(super) fn retry_after_barrier(&mut self) -> bool {
        let Some(frame) = self.retry.take() else {
            return false;
        };
        self.retrying = true;
        let result = self.handle_frame(*frame);
        self.retrying = false;
        if let Err(e) = result {
            self.close_with(e);
        }
        true
    }
}

//! A connection's channels: the map of open channels, and the frames for channels other
//! than 0 (`channel.open` and `channel.close`, the rest handed to the channel, channel errors
//! turned into `channel.close`).

use super::{barrier, truncate, Connection};
use crate::amqp::channel::OpenChannel;
use crate::amqp::error::{AmqpError, AmqpResult};
use crate::authz::Authz;
use amqp_wire::{ChannelClose, ChannelOpenOk, Frame, Method, ReplyCode, ShortString};
use std::sync::Arc;

/// The open channels of a connection, by number: a vector sorted by number. Most connections
/// have one channel or a few: a hash map would allocate room for four (~160 bytes) where one
/// takes 32. A lookup is a binary search.
pub(super) struct Channels<C = OpenChannel>(Vec<(u16, C)>);

impl<C> Default for Channels<C> {
    fn default() -> Self {
        Channels(Vec::new())
    }
}

impl<C> Channels<C> {
    fn find(&self, number: u16) -> Result<usize, usize> {
        self.0.binary_search_by_key(&number, |(n, _)| *n)
    }

    /// How many channels are open.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether channel `number` is open.
    pub fn contains(&self, number: u16) -> bool {
        self.find(number).is_ok()
    }

    /// Channel `number`.
    pub fn get(&self, number: u16) -> Option<&C> {
        self.find(number).ok().map(|i| &self.0[i].1)
    }

    /// Channel `number`, to change.
    pub fn get_mut(&mut self, number: u16) -> Option<&mut C> {
        self.find(number).ok().map(|i| &mut self.0[i].1)
    }

    /// Adds channel `number` (replacing one of that number, which the caller ruled out).
    pub fn insert(&mut self, number: u16, channel: C) {
        match self.find(number) {
            Ok(i) => self.0[i].1 = channel,
            Err(i) => {
                // Room for exactly one at first (a vector's first push allocates four), then
                // doubling.
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact(self.0.len().max(1));
                }
                self.0.insert(i, (number, channel));
            }
        }
    }

    /// Removes channel `number`.
    pub fn remove(&mut self, number: u16) -> Option<C> {
        let i = self.find(number).ok()?;
        let (_, channel) = self.0.remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(channel)
    }

    /// Every open channel.
    pub fn values(&self) -> impl Iterator<Item = &C> {
        self.0.iter().map(|(_, c)| c)
    }

    /// Every open channel, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut C> {
        self.0.iter_mut().map(|(_, c)| c)
    }

    /// Removes every channel.
    pub fn drain(&mut self) -> impl Iterator<Item = (u16, C)> {
        std::mem::take(&mut self.0).into_iter()
    }
}

impl Connection {
    /// Work to do after a batch of frames or when woken: each channel's confirms and
    /// dispatch, the memory alarm's charge, publisher flow control's look at the queues
    /// the batch reached.
    pub(super) fn flush_channels(&mut self) {
        let Some(ctx) = self.ctx.as_ref() else {
            return;
        };
        let mut charged = 0;
        let mut gathered = false;
        for ch in self.channels.values_mut().filter_map(OpenChannel::used_mut) {
            ch.flush(ctx);
            charged += std::mem::take(&mut ch.charged);
            gathered |= !ch.reached.is_empty();
        }
        crate::memory::charge(&self.server, charged);
        if gathered {
            let own = self.own_consumers();
            let flow = self.flow.get_or_insert_with(Default::default);
            for ch in self.channels.values_mut().filter_map(OpenChannel::used_mut) {
                flow.look(&mut ch.reached, &self.server.flow, &own);
            }
        }
    }

    /// Lets every queue the channels consume from deliver again.
    pub(super) fn dispatch_all(&self) {
        for ch in self.channels.values().filter_map(OpenChannel::used) {
            ch.dispatch();
        }
    }

    /// The consumer owners (channels) of this connection that consume: a queue only they
    /// consume from never holds this connection back (it would wait for itself).
    pub(super) fn own_consumers(&self) -> Vec<u64> {
        self.channels
            .values()
            .filter_map(OpenChannel::used)
            .filter(|c| !c.consumers.is_empty())
            .map(|c| c.shared.uid)
            .collect()
    }

    /// Handles a frame for channel `number` (not 0): opens and closes channels, hands the
    /// rest to the channel, and turns a channel error into `channel.close`.
    pub(super) fn handle_channel_frame(&mut self, number: u16, frame: Frame) -> AmqpResult {
        if let (Some(ctx), Frame::Method { .. }) = (self.ctx.as_mut(), &frame) {
            // Permissions changed since they were compiled: recompile before this method
            // (one atomic load otherwise).
            Authz::refresh(&mut ctx.authz, ctx.broker.access());
        }
        let Some(ctx) = self.ctx.as_ref() else {
            return Err(AmqpError::new(
                ReplyCode::ChannelError,
                "channel frame before connection.open",
            ));
        };
        if let Frame::Method { method, .. } = &frame {
            match method {
                Method::ChannelOpen(_) => {
                    // As RabbitMQ: channel_max bounds the number of open channels.
                    let open = self.channels.len();
                    if self.channel_max != 0 && open >= usize::from(self.channel_max) {
                        return Err(AmqpError::new(
                            ReplyCode::NotAllowed,
                            format!(
                                "number of channels opened ({open}) has reached the negotiated channel_max ({})",
                                self.channel_max
                            ),
                        )
                        .on(method));
                    }
                    if self.channels.contains(number) {
                        return Err(AmqpError::new(
                            ReplyCode::ChannelError,
                            "second 'channel.open' seen",
                        )
                        .on(method));
                    }
                    // The user's max-channels, over all of the user's connections
                    // (rabbit_reader create_channel): 530, closing the connection.
                    let slot = self
                        .server
                        .limits
                        .open_channel(ctx.broker.access(), &ctx.user)
                        .map_err(|e| AmqpError::limit(ReplyCode::NotAllowed, e))?;
                    let ch = OpenChannel::new(number, ctx, slot);
                    ch.shared.send(&Method::ChannelOpenOk(ChannelOpenOk {}));
                    self.reg
                        .entry
                        .add_channel(&self.server.registry, Arc::clone(&ch.shared) as _);
                    self.channels.insert(number, ch);
                    return Ok(());
                }
                Method::ChannelClose(_) => {
                    if let Some(mut ch) = self.channels.remove(number) {
                        // Out of the user's channel count before close-ok goes out.
                        ch.slot = None;
                        self.reg.entry.remove_channel(&self.server.registry, number);
                        ch.close_by_client(ctx);
                        return Ok(());
                    }
                }
                Method::ChannelCloseOk(_) => {
                    if self.channels.get(number).is_some_and(|c| c.closing()) {
                        self.channels.remove(number);
                        self.reg.entry.remove_channel(&self.server.registry, number);
                        return Ok(());
                    }
                    // A close-ok that answers nothing (RabbitMQ: 503).
                    return Err(
                        AmqpError::new(ReplyCode::CommandInvalid, "unimplemented method")
                            .on(method),
                    );
                }
                _ => {}
            }
        }
        let Some(ch) = self.channels.get_mut(number) else {
            return Err(AmqpError::new(
                ReplyCode::ChannelError,
                format!("expected 'channel.open' on channel {number}"),
            ));
        };
        let ch = ch.state();
        if ch.closing {
            return Ok(());
        }
        let mut missed = None;
        let result = match frame {
            Frame::Method { method, .. } => {
                let result = ch.handle_method(ctx, &method);
                // Read barrier (helper readwrites): a miss is answered once caught up.
                if !self.retrying && barrier::channel_method_waits(ctx, ch, &method, &result) {
                    missed = Some(method);
                }
                result
            }
            Frame::Header {
                class_id,
                body_size,
                properties,
                ..
            } => {
                self.publisher = true;
                ch.handle_header(ctx, class_id, body_size, properties)
            }
            Frame::Body { payload, .. } => ch.handle_body(ctx, payload),
            Frame::Heartbeat { .. } => Ok(()),
        };
        // A topology change went to the cluster: no frame is read until it is decided.
        if let Some(wait) = ch.meta_wait.take() {
            self.meta_wait = Some(wait);
        }
        if let Some(method) = missed {
            self.wait_for_barrier(Frame::Method {
                channel: number,
                method,
            });
            return Ok(());
        }
        match result {
            Err(e) if !e.is_connection_error() => {
                if e.logged {
                    tracing::debug!(peer = %self.reg.entry.peer(), channel = number, code = e.code.code(), text = %e.text, "closing channel");
                } else {
                    tracing::info!(peer = %self.reg.entry.peer(), channel = number, code = e.code.code(), text = %e.text, "closing channel");
                }
                ch.cleanup(ctx);
                ch.closing = true;
                ch.shared.send(&Method::ChannelClose(ChannelClose {
                    reply_code: e.code.code(),
                    reply_text: ShortString::from(truncate(&e.text)),
                    class_id: e.class_id,
                    method_id: e.method_id,
                }));
                Ok(())
            }
            other => other,
        }
    }
}

impl Connection {
    /// A topology change proposed to the cluster was decided (`amqp/replicated.rs`): the reply
    /// goes out, or the channel (a refusal) or the connection (no majority) closes.
    pub(super) fn finish_meta(&mut self, done: crate::amqp::replicated::MetaDone) {
        // Read barrier (helper readwrites): the frame that waited for it.
        if self.retry_after_barrier() {
            return;
        }
        let Some(e) = done.error() else {
            if let (Some(reply), Some(ch)) = (&done.reply, self.channels.get_mut(done.channel)) {
                let ch = ch.state();
                if !ch.closing {
                    ch.shared.send(reply);
                }
            }
            return;
        };
        if e.is_connection_error() {
            self.close_with(e);
            return;
        }
        let (Some(ctx), Some(ch)) = (self.ctx.as_ref(), self.channels.get_mut(done.channel)) else {
            return;
        };
        let ch = ch.state();
        if ch.closing {
            return;
        }
        tracing::info!(peer = %self.reg.entry.peer(), channel = done.channel, code = e.code.code(), text = %e.text, "closing channel");
        ch.cleanup(ctx);
        ch.closing = true;
        ch.shared.send(&Method::ChannelClose(ChannelClose {
            reply_code: e.code.code(),
            reply_text: ShortString::from(truncate(&e.text)),
            class_id: e.class_id,
            method_id: e.method_id,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_found_by_number_and_one_takes_room_for_one() {
        let mut c: Channels<&str> = Channels::default();
        assert!(c.get(1).is_none());
        for n in [5, 1, 3] {
            c.insert(n, "ch");
        }
        assert_eq!(c.0.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 3, 5]);
        assert!(c.contains(3) && !c.contains(2));
        assert_eq!(c.remove(3), Some("ch"));
        assert_eq!(c.remove(3), None);
        assert_eq!(c.len(), 2);
        let mut one: Channels<&str> = Channels::default();
        one.insert(1, "ch");
        assert_eq!(one.0.capacity(), 1);
        one.remove(1);
        assert_eq!(one.0.capacity(), 0, "an empty map holds nothing");
    }
}

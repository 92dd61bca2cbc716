//! What a queue tells about itself: its name, options, settings, counts and statistics, read
//! under its lock (the management API, the metrics, flow control and `queue.declare-ok`).

use super::*;

impl Queue {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it was declared.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Its effective settings (arguments and policy).
    pub fn settings(&self) -> QueueSettings {
        self.state.lock().settings.clone()
    }

    /// Whether redeliveries carry a delivery count (the queue has a delivery limit). Safe to
    /// call from a consumer sink.
    pub fn counts_deliveries(&self) -> bool {
        self.counts_deliveries.load(Ordering::Relaxed)
    }

    /// Ready messages, paged out or not (not counting those out for delivery).
    pub fn message_count(&self) -> u32 {
        if let Some(q) = self.quorum.get() {
            return q.counts().ready;
        }
        if let Some(log) = self.stream_log() {
            // A stream's committed offsets still held (tracking chunks take one each, so this
            // may over-count a little, as RabbitMQ's committed-offset based count does).
            let held = log.committed_offset().saturating_sub(log.first_offset());
            return u32::try_from(held).unwrap_or(u32::MAX);
        }
        count(self.state.lock().ready.len())
    }

    /// Body bytes of the ready messages, paged out or not (see [`Queue::resident_bytes`] for
    /// the memory alarm).
    pub fn queued_bytes(&self) -> usize {
        if let Some(q) = self.quorum.get() {
            return usize::try_from(q.counts().ready_bytes).unwrap_or(usize::MAX);
        }
        self.state.lock().ready.bytes()
    }

    /// Ready messages, the length limit (`x-max-length`) and whether anyone consumes, read
    /// under one lock: what a publisher's flow control weighs.
    pub fn backlog(&self) -> (usize, Option<usize>, bool) {
        let st = self.state.lock();
        (
            st.ready.len(),
            st.settings.max_length,
            !st.consumers.is_empty(),
        )
    }

    /// What a publisher's flow control weighs, read under one lock. `own` lists the consumer
    /// owners (channels, sessions) of the publisher itself: a queue only they consume from
    /// would wait for the publisher that waits for it.
    pub fn flow_view(&self, own: &[u64]) -> FlowView {
        if let Some(home) = self.remote.get() {
            // Homed on another node (metafinish): the messages waiting for the link are its
            // ready ones, consumed by the home (someone else), and the length marks bound
            // them (`remote::REMOTE_BACKLOG`).
            let waiting = home.backlog();
            return FlowView {
                ready: waiting,
                resident: 0,
                resident_bytes: 0,
                max_length: Some(2 * remote::REMOTE_BACKLOG),
                other_consumers: true,
            };
        }
        let st = self.state.lock();
        FlowView {
            ready: st.ready.len(),
            resident: st.ready.resident_len(),
            resident_bytes: st.ready.resident_bytes(),
            max_length: st.settings.max_length,
            other_consumers: st.consumers.iter().any(|c| !own.contains(&c.owner)),
        }
    }

    /// Messages dropped so far by a length limit.
    pub fn dropped_count(&self) -> u64 {
        self.state.lock().dropped
    }

    /// Messages delivered and not yet acknowledged (the management API's
    /// `messages_unacknowledged`).
    pub fn unacked_count(&self) -> u32 {
        if let Some(q) = self.quorum.get() {
            return q.counts().unacked;
        }
        count(self.state.lock().unacked)
    }

    /// The vhost it belongs to.
    pub fn vhost_name(&self) -> &str {
        &self.vhost_name
    }

    /// Its counts and counters, read under one lock (the management API and Prometheus). A
    /// stream's messages are those its log holds, all ready, none unacknowledged, as RabbitMQ
    /// counts them (rabbit_osiris_metrics: `offset + 1 - first_offset`, 0 unacked).
    pub fn stats(&self) -> QueueStats {
        let stream_held = self.stream_log().map(|_| self.message_count());
        let quorum = self.quorum.get().map(|q| q.counts());
        let st = self.state.lock();
        if let Some(q) = quorum {
            return QueueStats {
                ready: q.ready,
                unacked: q.unacked,
                bytes: q.ready_bytes,
                paged_out: 0,
                consumers: q.consumers,
                dropped: st.dropped,
                counters: st.counters,
            };
        }
        QueueStats {
            ready: stream_held.unwrap_or_else(|| count(st.ready.len())),
            unacked: if stream_held.is_some() {
                0
            } else {
                count(st.unacked)
            },
            bytes: st.ready.bytes() as u64,
            paged_out: count(st.ready.tail.count),
            consumers: count(st.consumers.len()),
            dropped: st.dropped,
            counters: st.counters,
        }
    }

    /// Registered consumers.
    pub fn consumer_count(&self) -> u32 {
        if let Some(q) = self.quorum.get() {
            return q.counts().consumers;
        }
        count(self.state.lock().consumers.len())
    }

    /// Checks that `connection` may use this queue (AMQP 405 RESOURCE_LOCKED otherwise).
    pub fn check_access(&self, connection: ConnectionId) -> Result<()> {
        match self.options.exclusive_owner {
            Some(owner) if owner != connection => Err(BrokerError::ResourceLocked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '{}'",
                self.name, self.vhost_name
            ))),
            _ => Ok(()),
        }
    }

    /// Marks the queue used now (a declaration), for `x-expires`.
    pub fn touch(&self) {
        let expires = {
            let mut st = self.state.lock();
            st.last_used = Instant::now();
            st.settings.expires
        };
        // --- quorum queues: `x-expires` counts from the group's last activity (quorumrest) ---
        if let (Some(q), Some(_)) = (self.quorum.get(), expires) {
            q.touched();
        }
    }
}

/// What the management API shows of a stream (rabbit_stream_queue's info keys `segments`,
/// `committed_offset`, `committed_chunk_id`, `first_timestamp`, from osiris' counters; and
/// the first and last offsets of `rabbitmq-streams stream_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamView {
    /// Messages held: from the first offset to the last committed one.
    pub messages: u64,
    /// Segment files.
    pub segments: usize,
    /// Bytes of the segment files.
    pub bytes: u64,
    /// The first offset still in the stream (the next one when it is empty).
    pub first_offset: u64,
    /// The last offset written, committed or not (`None`: empty).
    pub last_offset: Option<u64>,
    /// The last committed offset, -1 when none is (osiris' `committed_offset`).
    pub committed_offset: i64,
    /// The first offset of the last committed chunk, -1 when none is.
    pub committed_chunk_id: i64,
    /// The first chunk's timestamp, in ms since the Unix epoch (0 when empty).
    pub first_timestamp: i64,
}

impl Queue {
    /// The stream's view, `None` for a queue that is not a stream.
    pub fn stream_view(&self) -> Option<StreamView> {
        let log = self.stream_log()?;
        let stats = log.stats();
        let first_offset = log.first_offset();
        let committed_next = log.committed_offset();
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Some(StreamView {
            messages: committed_next.saturating_sub(first_offset),
            segments: stats.segments,
            bytes: stats.bytes,
            first_offset,
            last_offset: log.last_offset(),
            committed_offset: signed(committed_next) - 1,
            committed_chunk_id: log.committed_chunk_id().map_or(-1, signed),
            first_timestamp: log.first_timestamp().unwrap_or(0),
        })
    }
}

//! A queue's consumers: adding and removing them, and picking the next one (consumer
//! priorities, round-robin, single active consumer).

use super::*;

impl Queue {
    /// Registers a consumer and delivers to it what it has credit for. `on_added` runs once the
    /// consumer is accepted and before anything is delivered to it (AMQP sends `consume-ok`
    /// there, which must precede the first `basic.deliver`).
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: ConsumerEntry,
        on_added: impl FnOnce(),
    ) -> Result<()> {
        if self.is_quorum() {
            let Some(q) = self.quorum.get() else {
                return Err(BrokerError::NotFound(format!(
                    "quorum queue '{}' in vhost '{}' is not started on this node",
                    self.name, self.vhost_name
                )));
            };
            q.check_consume(self)?;
            on_added();
            q.add_consumer(self, consumer);
            self.state.lock().had_consumer = true;
            return Ok(());
        }
        self.locked(|st, dead| {
            if st.deleted {
                return Err(BrokerError::NotFound(format!(
                    "no queue '{}' in vhost '{}'",
                    self.name, self.vhost_name
                )));
            }
            if st.consumers.iter().any(|c| c.exclusive)
                || (consumer.exclusive && !st.consumers.is_empty())
            {
                return Err(BrokerError::AccessRefused(format!(
                    "queue '{}' in vhost '{}' in exclusive use",
                    self.name, self.vhost_name
                )));
            }
            on_added();
            // With a single active consumer, registration order alone decides which one is
            // active (RabbitMQ 3.10 ignores x-priority there): a later consumer never takes
            // over while the active one may still hold unacknowledged messages.
            let at = if st.settings.single_active_consumer {
                st.consumers.len()
            } else {
                st.consumers
                    .iter()
                    .position(|c| c.priority < consumer.priority)
                    .unwrap_or(st.consumers.len())
            };
            if at <= st.cursor && at < st.consumers.len() {
                st.cursor += 1;
            }
            st.consumers.insert(at, consumer);
            st.had_consumer = true;
            let now = Instant::now();
            st.last_used = now;
            self.dispatch_locked(st, now, dead);
            Ok(())
        })
    }

    /// Removes the consumer `tag` of `owner`. Returns `Some(unused)` if it existed, where
    /// `unused` says the queue is auto-delete and has now lost its last consumer. With a
    /// single active consumer, the next one takes over.
    pub fn remove_consumer(self: &Arc<Self>, owner: u64, tag: &str) -> Option<bool> {
        if let Some(q) = self.quorum.get() {
            // A quorum queue is never auto-delete.
            return q.remove_consumer(owner, tag).then_some(false);
        }
        let removed = self.remove_consumer_here(owner, tag);
        if let (Some(_), Some(home)) = (removed, self.remote.get()) {
            // A consumer of a queue homed on another node: it is cancelled there too.
            home.cancel(self, owner, tag);
        }
        removed
    }

    fn remove_consumer_here(self: &Arc<Self>, owner: u64, tag: &str) -> Option<bool> {
        self.locked(|st, dead| {
            let at = st
                .consumers
                .iter()
                .position(|c| c.owner == owner && &*c.tag == tag)?;
            st.consumers.remove(at);
            if st.settings.single_active_consumer && at == 0 && st.unacked > 0 {
                st.sac_handover = true;
            }
            if st.cursor > at {
                st.cursor -= 1;
            }
            if st.cursor >= st.consumers.len() {
                st.cursor = 0;
            }
            let now = Instant::now();
            st.last_used = now;
            self.dispatch_locked(st, now, dead);
            Some(self.options.auto_delete && st.had_consumer && st.consumers.is_empty())
        })
    }
}

/// Picks the consumer for the next message and takes its credit: the highest consumer
/// priority first, round-robin within a priority; with a single active consumer, only the
/// first one.
pub(super) fn pick_consumer(st: &mut State) -> Option<usize> {
    let n = st.consumers.len();
    if n == 0 {
        return None;
    }
    if st.settings.single_active_consumer {
        if st.sac_handover {
            return None;
        }
        return st.consumers[0].sink.try_reserve().then_some(0);
    }
    let mut start = 0;
    while start < n {
        let p = st.consumers[start].priority;
        let end = start
            + st.consumers[start..]
                .iter()
                .take_while(|c| c.priority == p)
                .count();
        let len = end - start;
        let first = if (start..end).contains(&st.cursor) {
            st.cursor - start
        } else {
            0
        };
        for k in 0..len {
            let i = start + (first + k) % len;
            if st.consumers[i].sink.try_reserve() {
                st.cursor = i + 1;
                return Some(i);
            }
        }
        start = end;
    }
    None
}

//! MQTT sessions: what outlives a connection, and the registry that finds them by client id.
//!
//! A session owns a queue (`mqtt-session-<client id>`, created on its first subscription)
//! bound to the MQTT exchange once per subscription; a shared subscription `$share/g/f`
//! is a queue of its own (`mqtt-shared-<g>-<f>`) with one consumer per member session, so the
//! queue's round-robin spreads the messages. The session's [`SessionCore`] holds its
//! subscriptions and the QoS 1/2 state (packets in flight each way); the connection attached
//! to it, if any, is in `attached`.

use super::qos2::PacketIds;
use super::sink::Attached;
use mqtt_wire::{Publish, QoS, SubscriptionOptions};
use parking_lot::Mutex;
use pigeon_broker::{Queue, QueuedMessage, VHost};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// One subscription of a session.
pub struct Subscription {
    /// The filter as the client wrote it, `$share/...` included (the unsubscribe key).
    pub key: String,
    /// The filter that matches topics (without `$share/group/`).
    pub filter: String,
    /// The binding pattern on the MQTT exchange.
    pub pattern: String,
    /// Subscription options (QoS, no-local, retain-as-published, retain handling).
    pub options: SubscriptionOptions,
    /// MQTT 5 subscription identifier.
    pub id: Option<u32>,
    /// The queue it is bound from: the session's own, or the shared group's.
    pub queue: Arc<Queue>,
    /// Shared subscription group.
    pub group: Option<String>,
}

/// A QoS 1/2 PUBLISH sent to the client and not yet completed.
pub struct Inflight {
    /// Its packet identifier.
    pub packet_id: u16,
    /// The PUBLISH as sent (resent with DUP on session resumption).
    pub publish: Publish,
    /// Where the message came from, until the queue is told it is settled (at PUBACK, or at
    /// PUBREC for QoS 2). `None` for retained messages.
    pub source: Option<(Arc<Queue>, QueuedMessage)>,
    /// PUBREC received and PUBREL sent: only PUBCOMP is awaited.
    pub released: bool,
}

/// The mutable state of a session.
#[derive(Default)]
pub struct SessionCore {
    /// Subscriptions, in the order they were made.
    pub subscriptions: Vec<Subscription>,
    /// The session's own queue, once it has a non-shared subscription.
    pub queue: Option<Arc<Queue>>,
    /// Outbound QoS 1/2 messages in flight, oldest first (boxed while any are, see
    /// [`Inflights`]).
    pub inflight: Inflights,
    /// Next packet identifier to try.
    pub next_packet_id: u16,
    /// Inbound QoS 2 packet ids received and not yet released (exactly-once; boxed while
    /// any are, see [`PacketIds`]).
    pub inbound_qos2: PacketIds,
    /// `inbound_qos2` changed since it was written to the store (persistent sessions only):
    /// the connection writes it at the end of the read batch, before the PUBREC / PUBCOMP.
    pub inbound_qos2_dirty: bool,
    /// Session expiry interval in seconds (`u32::MAX`: never).
    pub expiry: u32,
    /// The connection attached to the session, if it is online.
    pub attached: Option<Attached>,
    /// The session is written in the store (it has been persistent).
    pub stored: bool,
}

impl SessionCore {
    /// A free packet identifier (1..=65535, none in flight).
    pub fn allocate_packet_id(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
            let id = self.next_packet_id;
            if !self.inflight.iter().any(|i| i.packet_id == id) {
                return Some(id);
            }
        }
        None
    }

    /// The highest QoS, the identifiers and the retain-as-published flag of the subscriptions
    /// (of queue `from`) that match `topic`; `None` when none does or no-local excludes it.
    pub fn matching(
        &self,
        from: &Arc<Queue>,
        topic: &str,
        own_message: bool,
    ) -> Option<(QoS, Vec<u32>, bool)> {
        let mut best: Option<(QoS, Vec<u32>, bool)> = None;
        for s in &self.subscriptions {
            if !Arc::ptr_eq(&s.queue, from) || !super::topic::matches(&s.filter, topic) {
                continue;
            }
            // [MQTT-3.8.3-3]: no-local subscriptions do not get the session's own messages.
            if s.options.no_local && own_message {
                continue;
            }
            let b = best.get_or_insert((QoS::AtMostOnce, Vec::new(), false));
            b.0 = b.0.max(s.options.qos);
            b.1.extend(s.id);
            b.2 |= s.options.retain_as_published;
        }
        best
    }
}

/// A session.
pub struct Session {
    /// Client identifier (shared with the registry's key and the session's consumer tags).
    pub client_id: Arc<str>,
    /// Its vhost.
    pub vhost: Arc<VHost>,
    /// Broker-wide id: consumer owner and message origin (no-local).
    pub uid: u64,
    /// Mutable state.
    pub core: Mutex<SessionCore>,
    /// Held by the attached connection (taken at CONNECT, given back when the connection is
    /// dropped). A flag, and one `Notify` for every session in the [`Registry`] (a takeover
    /// is rare): a semaphore per session was 40 bytes of every one.
    pub lease: Lease,
    /// Connections waiting for `lease`: the attached connection sees it at its next turn and
    /// leaves (session takeover; the waiter wakes it through its outbound buffer).
    pub waiting: AtomicU32,
    /// Bumped at every attach; delayed wills and expiry timers check it (for equality: 32
    /// bits wrap only after 4 billion reconnections within one timer).
    pub generation: AtomicU32,
}

// Size: an `Arc<Session>` is one allocation per connected client. At 256 bytes it shared
// jemalloc's 256-byte class with tokio's `ScheduledIo`, which a hibernating connection frees:
// the freed halves of those slabs stayed resident (docs/performance.md, "Idle connections").
// The test `session::tests::a_session_fits_its_size_class` keeps it in the 160-byte class (the
// attached connection's `Outbound` reached through its registry entry, the inbound QoS 2 ids
// boxed while any are: 184 -> 160 bytes, sixth pass).

/// A session's outbound QoS 1/2 messages in flight: a `VecDeque` boxed while any are (8 bytes
/// instead of 32 in every session, and nothing while none are: most clients are QoS 0
/// subscribers or idle). [`Inflights::shrink`] frees an emptied one (a hibernating
/// connection's).
#[derive(Default)]
// Boxed on purpose: 8 bytes instead of 32 in every session (as `Attached::aliases`).
#[allow(clippy::box_collection)]
pub struct Inflights(Option<Box<VecDeque<Inflight>>>);

impl Inflights {
    /// How many are in flight.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |d| d.len())
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Inflight> {
        self.0.iter().flat_map(|d| d.iter())
    }

    /// Adds the newest.
    pub fn push_back(&mut self, i: Inflight) {
        self.0.get_or_insert_with(Default::default).push_back(i);
    }

    /// Removes the one at `index` (as [`Iterator::position`] found it).
    pub fn remove(&mut self, index: usize) -> Option<Inflight> {
        self.0.as_mut()?.remove(index)
    }

    /// The one at `index`, mutably.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut Inflight> {
        self.0.as_mut()?.get_mut(index)
    }

    /// Frees the box if none is in flight.
    pub fn shrink(&mut self) {
        if self.is_empty() {
            self.0 = None;
        }
    }
}

impl IntoIterator for Inflights {
    type Item = Inflight;
    type IntoIter = std::iter::Flatten<std::option::IntoIter<VecDeque<Inflight>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.map(|d| *d).into_iter().flatten()
    }
}

/// Sessions by vhost, then client id. A session's key is its own `client_id`: the registry
/// costs every connected client one 8-byte slot (a set of the sessions, looked up by client
/// id, rather than a map from a shared `Arc<str>` to the session: 24 bytes a slot).
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, ById>>,
    /// Signalled whenever a session's lease is given back ([`Registry::take_lease`]).
    lease_freed: Notify,
    /// MQTT across the cluster (`mqtt/cluster.rs`): told of every session [`Registry::end`]
    /// ends, so that the other nodes stop routing to its queue. One per registry, none per
    /// session; unset on a single node.
    ended: std::sync::OnceLock<EndHook>,
}

/// What [`Registry::end`] tells of an ended session (`Registry::on_end`).
pub type EndHook = Box<dyn Fn(&Session) + Send + Sync>;

/// A session's lease: whether a connection (or an operator's discard) holds it.
#[derive(Default)]
pub struct Lease(AtomicBool);

impl Lease {
    /// Whether nothing holds it.
    pub fn is_free(&self) -> bool {
        !self.0.load(Ordering::SeqCst)
    }

    /// Takes it if nothing holds it.
    fn try_take(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// The sessions of one vhost, by client id.
type ById = HashSet<ByClientId>;

/// A session in its vhost's set, found by its client id.
#[derive(Clone)]
struct ByClientId(Arc<Session>);

impl std::borrow::Borrow<str> for ByClientId {
    fn borrow(&self) -> &str {
        &self.0.client_id
    }
}

impl std::hash::Hash for ByClientId {
    // As `str` hashes, which `Borrow<str>` requires.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (*self.0.client_id).hash(state);
    }
}

impl PartialEq for ByClientId {
    fn eq(&self, other: &Self) -> bool {
        self.0.client_id == other.0.client_id
    }
}

impl Eq for ByClientId {}

impl Registry {
    /// The session of `client_id`, created if absent; the flag says it existed.
    pub fn get_or_create(
        &self,
        vhost: &Arc<VHost>,
        client_id: &str,
        uid: impl FnOnce() -> u64,
    ) -> (Arc<Session>, bool) {
        let mut map = self.sessions.lock();
        if let Some(s) = map.get(vhost.name()).and_then(|m| m.get(client_id)) {
            return (Arc::clone(&s.0), true);
        }
        let s = Arc::new(Session {
            client_id: Arc::from(client_id),
            vhost: Arc::clone(vhost),
            uid: uid(),
            core: Mutex::new(SessionCore::default()),
            lease: Lease::default(),
            waiting: AtomicU32::new(0),
            generation: AtomicU32::new(0),
        });
        map.entry(vhost.name().to_string())
            .or_default()
            .insert(ByClientId(Arc::clone(&s)));
        (s, false)
    }

    /// Takes `session`'s lease, waiting at most `limit` for its holder to give it back; false
    /// if it did not.
    pub async fn take_lease(&self, session: &Session, limit: std::time::Duration) -> bool {
        let taken = async {
            loop {
                let freed = self.lease_freed.notified();
                tokio::pin!(freed);
                // Registered before the look: a release in between is not missed.
                freed.as_mut().enable();
                if session.lease.try_take() {
                    return;
                }
                freed.await;
            }
        };
        tokio::time::timeout(limit, taken).await.is_ok()
    }

    /// Sets what is told of every ended session (MQTT across the cluster; once).
    pub fn on_end(&self, hook: EndHook) {
        let _ = self.ended.set(hook);
    }

    /// Whether the sessions' ends are told to the cluster (`on_end` was set): a session's
    /// quorum queue, which every node has, is then deleted through the metadata group
    /// (`cluster/mqtt_failover.rs`), not by [`Session::discard`] alone.
    pub fn clustered(&self) -> bool {
        self.ended.get().is_some()
    }

    /// Gives `session`'s lease back (its connection was dropped, or a discard is done).
    pub fn give_back_lease(&self, session: &Session) {
        session.lease.0.store(false, Ordering::SeqCst);
        self.lease_freed.notify_waiters();
    }

    /// Looks a session up without creating it.
    pub fn get(&self, vhost: &str, client_id: &str) -> Option<Arc<Session>> {
        let map = self.sessions.lock();
        map.get(vhost)?.get(client_id).map(|s| Arc::clone(&s.0))
    }

    /// Forgets `session` (if it is still the registered one) and releases what it holds.
    pub fn end(&self, session: &Arc<Session>) {
        {
            let mut map = self.sessions.lock();
            let vhost = session.vhost.name();
            let Some(by_id) = map.get_mut(vhost) else {
                return;
            };
            match by_id.get(&*session.client_id) {
                Some(s) if Arc::ptr_eq(&s.0, session) => {
                    by_id.remove(&*session.client_id);
                    if by_id.is_empty() {
                        map.remove(vhost);
                    }
                }
                _ => return,
            }
        }
        session.discard(self.clustered());
        // MQTT across the cluster: the other nodes forget the session's queue.
        if let Some(hook) = self.ended.get() {
            hook(session);
        }
    }

    /// Ends every session of `vhost`, which is being deleted: each is forgotten here and in
    /// the store. A connected one is only woken (its connection sees the deleted vhost and
    /// closes; its state goes with it); the others are discarded now.
    pub fn end_vhost(&self, vhost: &str) {
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .remove(vhost)
            .map(|m| m.into_iter().map(|s| s.0).collect())
            .unwrap_or_default();
        for s in sessions {
            let attached = s.core.lock().attached.as_ref().map(|a| Arc::clone(a.out()));
            match attached {
                Some(out) => {
                    super::persist::forget(&s);
                    out.wake();
                }
                None => s.discard(false),
            }
        }
    }

    /// Wakes every connected session's task (to look whether its user still exists).
    pub fn wake_all(&self) {
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .values()
            .flat_map(|m| m.iter().map(|s| Arc::clone(&s.0)))
            .collect();
        for s in sessions {
            if let Some(a) = s.core.lock().attached.as_ref() {
                a.out().wake();
            }
        }
    }

    /// Every session (online and offline), of one vhost or of all.
    pub fn all(&self, vhost: Option<&str>) -> Vec<Arc<Session>> {
        let map = self.sessions.lock();
        match vhost {
            Some(v) => map
                .get(v)
                .map(|m| m.iter().map(|s| Arc::clone(&s.0)).collect())
                .unwrap_or_default(),
            None => map
                .values()
                .flat_map(|m| m.iter().map(|s| Arc::clone(&s.0)))
                .collect(),
        }
    }

    /// Number of sessions (online and offline).
    pub fn len(&self) -> usize {
        self.sessions.lock().values().map(HashSet::len).sum()
    }

    /// Number of subscriptions over all sessions.
    pub fn subscription_count(&self) -> usize {
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .values()
            .flat_map(|m| m.iter().map(|s| Arc::clone(&s.0)))
            .collect();
        sessions
            .iter()
            .map(|s| s.core.lock().subscriptions.len())
            .sum()
    }
}

impl Session {
    /// Drops the session's subscriptions, its queue and its in-flight messages (those from a
    /// shared queue go back to it for the group's other members). `clustered`: a quorum queue
    /// is left in place, for the metadata group to delete on every node
    /// (`cluster/mqtt_failover.rs`, `Forwarder::session_ended`).
    pub fn discard(&self, clustered: bool) {
        super::persist::forget(self);
        let (subscriptions, queue, inflight) = {
            let mut core = self.core.lock();
            core.attached = None;
            core.inbound_qos2.clear();
            core.inbound_qos2_dirty = false;
            (
                std::mem::take(&mut core.subscriptions),
                core.queue.take(),
                std::mem::take(&mut core.inflight),
            )
        };
        for s in &subscriptions {
            if s.group.is_some() {
                self.vhost
                    .remove_consumer(&s.queue, self.uid, &self.client_id);
            }
        }
        // Messages still unacknowledged go back to their queue (a shared group's other members
        // get them; the session's own queue is deleted next and drops them).
        for i in inflight {
            if let Some((q, m)) = i.source {
                q.requeue([m]);
            }
        }
        if let Some(q) = queue.filter(|q| !(clustered && q.is_quorum())) {
            self.vhost.remove_queue(&q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `Arc<Session>` (the session and the two counts before it) stays in jemalloc's
    /// 160-byte class (and out of the 256-byte class, tokio's `ScheduledIo`'s, which
    /// hibernating connections free: docs/performance.md, "Idle connections").
    #[test]
    fn a_session_fits_its_size_class() {
        let size = std::mem::size_of::<Session>() + 2 * std::mem::size_of::<usize>();
        println!(
            "Arc<Session>: {size} bytes (SessionCore {}, Attached {})",
            std::mem::size_of::<SessionCore>(),
            std::mem::size_of::<Attached>()
        );
        assert!(size <= 160, "{size}");
    }

    /// A takeover waits for the lease until its holder gives it back, and no longer than its
    /// limit; the registry's sets find sessions by client id.
    #[tokio::test]
    async fn a_lease_is_taken_once_given_back() {
        let state = crate::tests_support::state();
        let vhost = state.broker.vhost("/").expect("the default vhost");
        let registry = Arc::new(Registry::default());
        let (session, existed) = registry.get_or_create(&vhost, "c1", || 7);
        assert!(!existed);
        assert!(registry
            .get("/", "c1")
            .is_some_and(|s| Arc::ptr_eq(&s, &session)));
        assert!(registry.get("/", "c2").is_none());
        let short = std::time::Duration::from_millis(20);
        assert!(registry.take_lease(&session, short).await);
        assert!(!session.lease.is_free());
        assert!(
            !registry.take_lease(&session, short).await,
            "held: times out"
        );
        let waiter = {
            let (registry, session) = (Arc::clone(&registry), Arc::clone(&session));
            tokio::spawn(async move {
                registry
                    .take_lease(&session, std::time::Duration::from_secs(30))
                    .await
            })
        };
        tokio::task::yield_now().await;
        registry.give_back_lease(&session);
        assert!(waiter.await.expect("the waiter"), "taken once given back");
        assert!(!session.lease.is_free());
        registry.end(&session);
        assert!(registry.get("/", "c1").is_none());
        assert_eq!(registry.len(), 0);
    }
}

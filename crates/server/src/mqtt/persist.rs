//! Persistent MQTT sessions on disk: a session whose expiry is not 0 keeps its subscriptions in
//! the metadata store, and its queue is durable, so the QoS 1/2 messages waiting for it (and
//! those in flight, which come back flagged as redeliveries) survive a restart or a crash.
//!
//! Not kept: inbound QoS 2 packet ids waiting for PUBREL (a PUBLISH resent after a restart is
//! routed again), shared subscriptions (their group queues are not durable), outbound packet ids
//! (in-flight messages are resent with new ids and DUP set).

use super::session::{Session, Subscription};
use crate::ServerState;
use bytes::{BufMut, Bytes};
use mqtt_wire::{QoS, RetainHandling, SubscriptionOptions};
use pigeon_broker::durable::key;
use pigeon_broker::record::{self, get_string, put_bytes};
use pigeon_broker::VHost;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const TABLE: &str = "mqtt_sessions";

/// Writes the session's expiry and subscriptions, if it is persistent and there is a store.
pub fn save(session: &Session) {
    let Some(store) = session.vhost.store() else {
        return;
    };
    let mut core = session.core.lock();
    if core.expiry == 0 {
        return;
    }
    core.stored = true;
    let mut v = record::begin();
    v.put_u32_le(core.expiry);
    let own: Vec<&Subscription> = core
        .subscriptions
        .iter()
        .filter(|s| s.group.is_none())
        .collect();
    v.put_u32_le(own.len() as u32);
    for s in own {
        put_bytes(&mut v, s.key.as_bytes());
        put_bytes(&mut v, s.filter.as_bytes());
        put_bytes(&mut v, s.pattern.as_bytes());
        v.put_u8(s.options.qos as u8);
        v.put_u8(u8::from(s.options.no_local));
        v.put_u8(u8::from(s.options.retain_as_published));
        v.put_u8(s.options.retain_handling as u8);
        v.put_u32_le(s.id.unwrap_or(0));
    }
    // Written after the session's lock is released: deliveries wait for it.
    drop(core);
    if let Err(e) = store.meta_put(TABLE, &key(session.vhost.name(), &session.client_id), &v) {
        tracing::error!(error = %e, "cannot persist an MQTT session");
    }
}

/// Forgets a session on disk.
pub fn forget(session: &Session) {
    if !std::mem::take(&mut session.core.lock().stored) {
        return;
    }
    if let Some(store) = session.vhost.store() {
        if let Err(e) = store.meta_delete(TABLE, &key(session.vhost.name(), &session.client_id)) {
            tracing::error!(error = %e, "cannot delete an MQTT session");
        }
    }
}

fn get_u8(b: &mut Bytes) -> Option<u8> {
    record::get_u8(b)
}

fn get_u32(b: &mut Bytes) -> Option<u32> {
    let bytes: [u8; 4] = b.get(..4)?.try_into().ok()?;
    let _ = b.split_to(4);
    Some(u32::from_le_bytes(bytes))
}

/// Recreates the persistent sessions kept on disk (offline; their queues were recovered with
/// the other durable queues). Sessions with a finite expiry start counting it again now.
/// Returns how many.
pub fn recover(server: &Arc<ServerState>) -> usize {
    let mut n = 0;
    for vhost in server.broker.vhosts() {
        let Some(store) = vhost.store() else {
            continue;
        };
        let Ok(entries) = store.meta_scan(TABLE) else {
            continue;
        };
        let prefix = key(vhost.name(), "");
        for (k, v) in entries {
            let Some(client_id) = k
                .strip_prefix(prefix.as_slice())
                .and_then(|c| std::str::from_utf8(c).ok())
            else {
                continue;
            };
            if restore_one(server, &vhost, client_id, &v).is_none() {
                tracing::warn!(client_id, "skipping an unreadable MQTT session");
                continue;
            }
            n += 1;
        }
    }
    n
}

fn restore_one(
    server: &Arc<ServerState>,
    vhost: &Arc<VHost>,
    client_id: &str,
    v: &[u8],
) -> Option<()> {
    let mut b = record::open(v)?;
    let expiry = get_u32(&mut b)?;
    let count = get_u32(&mut b)?;
    let queue = vhost.queue(&format!("mqtt-session-{client_id}")).ok();
    let (session, _) = server
        .mqtt
        .registry
        .get_or_create(vhost, client_id, || server.broker.next_id());
    let mut core = session.core.lock();
    core.expiry = expiry;
    core.stored = true;
    core.queue = queue.clone();
    for _ in 0..count {
        let key = get_string(&mut b)?;
        let filter = get_string(&mut b)?;
        let pattern = get_string(&mut b)?;
        let qos = QoS::try_from(get_u8(&mut b)?).ok()?;
        let no_local = get_u8(&mut b)? != 0;
        let retain_as_published = get_u8(&mut b)? != 0;
        let retain_handling = match get_u8(&mut b)? {
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => RetainHandling::SendAtSubscribe,
        };
        let id = get_u32(&mut b)?;
        let Some(queue) = queue.clone() else {
            continue;
        };
        let mut options = SubscriptionOptions::new(qos);
        options.no_local = no_local;
        options.retain_as_published = retain_as_published;
        options.retain_handling = retain_handling;
        core.subscriptions.push(Subscription {
            key,
            filter,
            pattern,
            options,
            id: (id != 0).then_some(id),
            queue,
            group: None,
        });
    }
    drop(core);
    if expiry != u32::MAX {
        let (server, session) = (Arc::clone(server), Arc::clone(&session));
        let generation = session.generation.load(Ordering::Relaxed);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(u64::from(expiry))).await;
            if session.generation.load(Ordering::Relaxed) == generation
                && session.lease.available_permits() == 1
            {
                server.mqtt.registry.end(&session);
            }
        });
    }
    Some(())
}

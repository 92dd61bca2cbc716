//! Persistent MQTT sessions on disk: a session whose expiry is not 0 keeps its subscriptions in
//! the metadata store, and its queue is durable, so the QoS 1/2 messages waiting for it (and
//! those in flight, which come back flagged as redeliveries) survive a restart or a crash.
//!
//! The inbound QoS 2 packet ids waiting for PUBREL are kept too (table `mqtt_inbound_qos2`,
//! one row per session): the PUBREC of such a PUBLISH waits until its id is written, and the
//! PUBCOMP until the id is removed, so a PUBLISH resent after a restart (DUP, before PUBREL) is
//! acknowledged and not routed twice, and a released id is never mistaken for a resend. The
//! ids of one read batch are written together (one fsynced redb commit per batch that has any).
//! The window left: a crash after a PUBLISH is routed and before its id is written (within its
//! read batch, before its PUBREC went out) lets the client's resend be routed again; closing it
//! would take the id and the message in one atomic write.
//!
//! Not kept: shared subscriptions (their group queues are not durable), outbound packet ids
//! (in-flight messages are resent with new ids and DUP set).

use super::session::{Session, SessionCore, Subscription};
use crate::ServerState;
use bytes::{BufMut, Bytes};
use mqtt_wire::{QoS, RetainHandling, SubscriptionOptions};
use pigeon_broker::durable::key;
use pigeon_broker::record::{self, get_string, put_bytes};
use pigeon_broker::VHost;
use pigeon_store::MetaOp;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const TABLE: &str = "mqtt_sessions";
/// Inbound QoS 2 packet ids awaiting PUBREL, by session: a count and the ids (u16, LE).
const QOS2_TABLE: &str = "mqtt_inbound_qos2";

/// Writes the session's expiry and subscriptions, if it is persistent and there is a store.
pub fn save(session: &Session) {
    // A deleted vhost's sessions are gone from the store with it: write nothing back.
    let Some(store) = session
        .vhost
        .store()
        .filter(|_| !session.vhost.is_deleted())
    else {
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

/// Forgets a session on disk (with its inbound QoS 2 ids).
pub fn forget(session: &Session) {
    if !std::mem::take(&mut session.core.lock().stored) {
        return;
    }
    if let Some(store) = session.vhost.store() {
        let k = key(session.vhost.name(), &session.client_id);
        let ops = [
            MetaOp::Delete {
                table: TABLE,
                key: &k,
            },
            MetaOp::Delete {
                table: QOS2_TABLE,
                key: &k,
            },
        ];
        if let Err(e) = store.meta_batch(&ops) {
            tracing::error!(error = %e, "cannot delete an MQTT session");
        }
    }
}

/// Whether the inbound QoS 2 ids of `core`'s session are kept on disk: it is persistent and
/// there is a store.
pub fn keeps_inbound_qos2(session: &Session, core: &SessionCore) -> bool {
    core.expiry != 0 && session.vhost.store().is_some()
}

/// Writes the session's inbound QoS 2 ids if they changed since the last write: called by the
/// connection at the end of each read batch, before it sends the PUBREC / PUBCOMP that wait
/// for it. On a write error the ids stay in memory only (logged): exactly-once then holds
/// until a restart, as before they were kept.
pub fn save_inbound_qos2(session: &Session) {
    let Some(store) = session
        .vhost
        .store()
        .filter(|_| !session.vhost.is_deleted())
    else {
        return;
    };
    let value = {
        let mut core = session.core.lock();
        if !std::mem::take(&mut core.inbound_qos2_dirty) {
            return;
        }
        (!core.inbound_qos2.is_empty()).then(|| {
            let mut v = record::begin();
            v.put_u32_le(core.inbound_qos2.len() as u32);
            for id in &core.inbound_qos2 {
                v.put_u16_le(*id);
            }
            v
        })
    };
    // Written after the session's lock is released: deliveries wait for it.
    let k = key(session.vhost.name(), &session.client_id);
    let written = match &value {
        Some(v) => store.meta_put(QOS2_TABLE, &k, v),
        None => store.meta_delete(QOS2_TABLE, &k),
    };
    if let Err(e) = written {
        tracing::error!(error = %e, client_id = %session.client_id, "cannot persist the inbound QoS 2 packet ids of an MQTT session");
    }
}

/// The inbound QoS 2 ids kept for a session.
fn load_inbound_qos2(vhost: &VHost, client_id: &str) -> Option<Vec<u16>> {
    let store = vhost.store()?;
    let v = match store.meta_get(QOS2_TABLE, &key(vhost.name(), client_id)) {
        Ok(Some(v)) => v,
        Ok(None) => return Some(Vec::new()),
        Err(e) => {
            tracing::error!(error = %e, client_id, "cannot read the inbound QoS 2 packet ids of an MQTT session");
            return None;
        }
    };
    let mut b = record::open(&v)?;
    let count = get_u32(&mut b)?;
    let mut ids = Vec::with_capacity(count.min(u32::from(u16::MAX)) as usize);
    for _ in 0..count {
        let bytes: [u8; 2] = b.get(..2)?.try_into().ok()?;
        let _ = b.split_to(2);
        ids.push(u16::from_le_bytes(bytes));
    }
    Some(ids)
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
    let inbound_qos2 = load_inbound_qos2(vhost, client_id).unwrap_or_else(|| {
        tracing::warn!(
            client_id,
            "unreadable inbound QoS 2 packet ids: a PUBLISH resent before PUBREL is routed again"
        );
        Vec::new()
    });
    let (session, _) = server
        .mqtt
        .registry
        .get_or_create(vhost, client_id, || server.broker.next_id());
    let mut core = session.core.lock();
    core.expiry = expiry;
    core.stored = true;
    core.queue = queue.clone();
    core.inbound_qos2.extend(inbound_qos2);
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
            if session.generation.load(Ordering::Relaxed) == generation && session.lease.is_free() {
                server.mqtt.registry.end(&session);
            }
        });
    }
    Some(())
}

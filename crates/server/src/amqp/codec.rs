//! How the broker core reads and rewrites AMQP-encoded message properties.
//!
//! Every message is stored with AMQP basic properties (MQTT publishes too, see
//! `mqtt/convert.rs`), so this one codec serves both protocols.

use super::convert;
use amqp_wire::{BasicProperties, FieldTable, FieldValue, ShortString};
use bytes::Bytes;
use pigeon_broker::{Death, MessageMeta, PropertiesCodec, PropertiesView};

/// The codec of AMQP 0-9-1 basic properties.
pub struct AmqpCodec;

/// The one instance messages point to.
pub static AMQP_CODEC: AmqpCodec = AmqpCodec;

// Property flag bits (AMQP 0-9-1 basic class, property order from bit 15 down).
const FLAG_DELIVERY_MODE: u16 = 1 << 12;
const FLAG_PRIORITY: u16 = 1 << 11;
const FLAG_EXPIRATION: u16 = 1 << 8;

fn long_string(s: &str) -> FieldValue {
    FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()))
}

/// The per-message TTL of an `expiration` value: milliseconds as decimal text.
pub fn parse_expiration(e: &str) -> Option<u64> {
    e.parse::<u64>().ok()
}

impl PropertiesCodec for AmqpCodec {
    fn view(&self, raw: &Bytes) -> PropertiesView {
        convert::properties_view(raw)
    }

    fn meta(&self, raw: &Bytes) -> MessageMeta {
        let flags = match raw.get(..2) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => return MessageMeta::default(),
        };
        // Plain messages (at most a delivery mode) are read without decoding.
        if flags & !FLAG_DELIVERY_MODE == 0 {
            return MessageMeta {
                persistent: flags != 0 && raw.get(2) == Some(&2),
                ..MessageMeta::default()
            };
        }
        let Ok(p) = BasicProperties::decode(raw) else {
            return MessageMeta::default();
        };
        MessageMeta {
            expiration_ms: if flags & FLAG_EXPIRATION != 0 {
                p.expiration
                    .as_ref()
                    .and_then(|e| parse_expiration(e.as_str()))
            } else {
                None
            },
            priority: if flags & FLAG_PRIORITY != 0 {
                p.priority
            } else {
                None
            },
            persistent: p.delivery_mode == Some(2),
        }
    }

    fn dead_lettered(&self, raw: &Bytes, death: &Death) -> Bytes {
        let mut p = BasicProperties::decode(raw).unwrap_or_default();
        let mut headers = p.headers.take().unwrap_or_default();
        let mut deaths: Vec<FieldValue> = match headers.remove("x-death") {
            Some(FieldValue::Array(a)) => a,
            _ => Vec::new(),
        };
        // RabbitMQ keeps one x-death entry per (queue, reason), most recent first, counting.
        // A repeated death only increments the count of its entry (which moves to the front):
        // the entry's time, exchange and routing keys stay those of the first such death.
        let same = |t: &FieldTable| {
            t.get("queue").and_then(FieldValue::as_str) == Some(death.queue.as_str())
                && t.get("reason").and_then(FieldValue::as_str) == Some(death.reason.as_str())
        };
        let previous = deaths
            .iter()
            .position(|d| matches!(d, FieldValue::Table(t) if same(t)))
            .map(|i| deaths.remove(i));
        let expiration = p.expiration.take();
        let entry = match previous {
            Some(FieldValue::Table(mut entry)) => {
                let count = entry.get("count").and_then(FieldValue::as_i64).unwrap_or(0) + 1;
                entry.insert("count", FieldValue::I64(count));
                entry
            }
            _ => {
                let mut entry = FieldTable::new();
                entry.insert("count", FieldValue::I64(1));
                entry.insert("reason", long_string(death.reason.as_str()));
                entry.insert("queue", long_string(&death.queue));
                entry.insert("time", FieldValue::Timestamp(death.time));
                entry.insert("exchange", long_string(&death.exchange));
                entry.insert(
                    "routing-keys",
                    FieldValue::Array(death.routing_keys.iter().map(|k| long_string(k)).collect()),
                );
                if let Some(e) = expiration {
                    entry.insert("original-expiration", long_string(e.as_str()));
                }
                entry
            }
        };
        deaths.insert(0, FieldValue::Table(entry));
        headers.insert("x-death", FieldValue::Array(deaths));
        if death.remove_cc {
            headers.remove("CC");
        }
        for (key, value) in [
            ("x-first-death-reason", death.reason.as_str()),
            ("x-first-death-queue", death.queue.as_str()),
            ("x-first-death-exchange", death.exchange.as_str()),
        ] {
            if headers.get(key).is_none() {
                headers.insert(ShortString::from_static(key), long_string(value));
            }
        }
        p.headers = Some(headers);
        p.to_bytes()
    }

    fn cc_keys(&self, raw: &Bytes) -> Vec<String> {
        super::sender_selected::cc_keys(raw)
    }
}

/// The properties with an `x-delivery-count` header (redeliveries from a queue with a delivery
/// limit, as RabbitMQ's quorum queues write it).
pub fn with_delivery_count(raw: &Bytes, count: u32) -> Bytes {
    let mut p = BasicProperties::decode(raw).unwrap_or_default();
    let mut headers = p.headers.take().unwrap_or_default();
    headers.insert("x-delivery-count", FieldValue::I64(i64::from(count)));
    p.headers = Some(headers);
    p.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pigeon_broker::DeathReason;

    fn death(queue: &str, reason: DeathReason) -> Death {
        Death {
            queue: queue.into(),
            reason,
            exchange: "ex".into(),
            routing_keys: vec!["rk".into()],
            remove_cc: false,
            time: 1_700_000_000,
        }
    }

    #[test]
    fn x_death_counts_per_queue_and_reason_most_recent_first() {
        let p = BasicProperties {
            expiration: Some(ShortString::from("5000")),
            ..BasicProperties::default()
        };
        let raw = p.to_bytes();
        let once = AMQP_CODEC.dead_lettered(&raw, &death("q1", DeathReason::Expired));
        let twice = AMQP_CODEC.dead_lettered(&once, &death("q2", DeathReason::Rejected));
        let thrice = AMQP_CODEC.dead_lettered(&twice, &death("q1", DeathReason::Expired));
        let p = BasicProperties::decode(&thrice).unwrap();
        assert_eq!(p.expiration, None);
        let h = p.headers.unwrap();
        let Some(FieldValue::Array(deaths)) = h.get("x-death") else {
            panic!("no x-death");
        };
        assert_eq!(deaths.len(), 2);
        let FieldValue::Table(first) = &deaths[0] else {
            panic!("not a table");
        };
        assert_eq!(first.get("queue").and_then(FieldValue::as_str), Some("q1"));
        assert_eq!(first.get("count").and_then(FieldValue::as_i64), Some(2));
        assert_eq!(
            first
                .get("original-expiration")
                .and_then(FieldValue::as_str),
            Some("5000"),
            "an incremented entry keeps what its first death recorded"
        );
        assert_eq!(
            h.get("x-first-death-queue").and_then(FieldValue::as_str),
            Some("q1")
        );
        assert_eq!(
            h.get("x-first-death-reason").and_then(FieldValue::as_str),
            Some("expired")
        );
    }

    #[test]
    fn meta_reads_plain_properties_without_decoding() {
        let persistent = BasicProperties {
            delivery_mode: Some(2),
            ..BasicProperties::default()
        };
        let m = AMQP_CODEC.meta(&persistent.to_bytes());
        assert!(m.persistent);
        let ttl = BasicProperties {
            expiration: Some(ShortString::from("250")),
            priority: Some(7),
            ..BasicProperties::default()
        };
        let m = AMQP_CODEC.meta(&ttl.to_bytes());
        assert_eq!((m.expiration_ms, m.priority), (Some(250), Some(7)));
    }
}

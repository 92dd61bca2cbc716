//! MQTT 5 properties and AMQP properties, both ways, as DESIGN.md maps them.
//!
//! Messages are stored with AMQP-encoded properties whatever protocol published them (see
//! docs/architecture.md): user properties become headers (in order), content type, correlation
//! data, response topic (`reply_to`) and message expiry (`expiration`, milliseconds) map to
//! their AMQP twins, QoS 1/2 is `delivery_mode` 2. What AMQP has no field for travels in
//! `x-mqtt-*` headers, which are not shown to MQTT subscribers as user properties.

use super::topic;
use amqp_wire::{BasicProperties, FieldTable, FieldValue, ShortString};
use bytes::Bytes;
use mqtt_wire::{PayloadFormat, PublishProperties, QoS, TopicName};
use std::time::Duration;

/// Header holding the publish QoS when it was 2 (1 and 0 are told apart by delivery_mode).
const QOS_HEADER: &str = "x-mqtt-publish-qos";
/// Header holding the MQTT 5 payload format indicator.
const FORMAT_HEADER: &str = "x-mqtt-payload-format-indicator";
/// Header marking a message published with the RETAIN flag (for retain-as-published).
const RETAIN_HEADER: &str = "x-mqtt-retain";
/// Header holding correlation data that is not a valid AMQP short string.
const CORRELATION_HEADER: &str = "x-correlation-id";

/// Encodes the AMQP properties of a message published over MQTT.
pub fn amqp_properties(qos: QoS, retain: bool, props: &PublishProperties) -> Bytes {
    let mut p = BasicProperties {
        delivery_mode: Some(if qos == QoS::AtMostOnce { 1 } else { 2 }),
        ..BasicProperties::default()
    };
    let mut headers: Vec<(ShortString, FieldValue)> = props
        .user_properties
        .iter()
        .map(|(k, v)| {
            (
                ShortString::from(k.as_str()),
                FieldValue::LongString(Bytes::copy_from_slice(v.as_bytes())),
            )
        })
        .collect();
    if qos == QoS::ExactlyOnce {
        headers.push((ShortString::from_static(QOS_HEADER), FieldValue::U8(2)));
    }
    if retain {
        headers.push((
            ShortString::from_static(RETAIN_HEADER),
            FieldValue::Bool(true),
        ));
    }
    if let Some(f) = props.payload_format_indicator {
        let v = u8::from(f == PayloadFormat::Utf8);
        headers.push((ShortString::from_static(FORMAT_HEADER), FieldValue::U8(v)));
    }
    p.content_type = props.content_type.as_deref().map(ShortString::from);
    p.reply_to = props
        .response_topic
        .as_ref()
        .map(|t| ShortString::from(topic::to_routing_key(t.as_str())));
    if let Some(c) = &props.correlation_data {
        match ShortString::try_from(c.clone()) {
            Ok(s) => p.correlation_id = Some(s),
            Err(_) => headers.push((
                ShortString::from_static(CORRELATION_HEADER),
                FieldValue::ByteArray(c.clone()),
            )),
        }
    }
    p.expiration = props
        .message_expiry_interval
        .map(|s| ShortString::from((u64::from(s) * 1000).to_string()));
    if !headers.is_empty() {
        // Pushed, not inserted: user properties may repeat a name [MQTT-3.3.2-18].
        let mut table = FieldTable::new();
        for (k, v) in headers {
            table.push(k, v);
        }
        p.headers = Some(table);
    }
    p.to_bytes()
}

/// What an MQTT delivery needs from a stored message.
pub struct Outgoing {
    /// The QoS it was published with.
    pub qos: QoS,
    /// MQTT 5 publish properties (empty for 3.1.1 subscribers).
    pub properties: PublishProperties,
    /// It has expired and must not be delivered.
    pub expired: bool,
    /// It was published with the RETAIN flag.
    pub retain: bool,
}

/// Reads the stored AMQP properties of a message for an MQTT subscriber. `v5` asks for the
/// MQTT 5 properties as well; a 3.1.1 delivery only needs the QoS. `age`: how long ago the
/// broker received the message, which it keeps for messages with a TTL (none: not expired).
pub fn outgoing(raw: &[u8], age: Option<Duration>, v5: bool) -> Outgoing {
    let mut out = Outgoing {
        qos: QoS::AtMostOnce,
        properties: PublishProperties::default(),
        expired: false,
        retain: false,
    };
    // Flags alone (2 bytes) or flags + delivery_mode (3 bytes): the common case, no decoding.
    if raw.len() == 3 && raw[0] == 0x10 && raw[1] == 0 {
        out.qos = if raw[2] == 2 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        return out;
    }
    // A copy, as the message keeps its properties inside its own allocation.
    let Ok(p) = BasicProperties::decode(&Bytes::copy_from_slice(raw)) else {
        return out;
    };
    out.qos = if p.delivery_mode == Some(2) {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    if let Some(h) = &p.headers {
        if h.get(QOS_HEADER).and_then(FieldValue::as_i64) == Some(2) {
            out.qos = QoS::ExactlyOnce;
        }
        out.retain = h.get(RETAIN_HEADER).and_then(FieldValue::as_bool) == Some(true);
    }
    if let Some(ms) = p
        .expiration
        .as_ref()
        .and_then(|e| e.as_str().parse::<u64>().ok())
    {
        let elapsed = age.unwrap_or_default().as_millis() as u64;
        if elapsed >= ms {
            out.expired = true;
            return out;
        }
        // [MQTT-3.3.2-6]: forward the remaining lifetime, in whole seconds, rounded up.
        let left = (ms - elapsed).div_ceil(1000);
        out.properties.message_expiry_interval = Some(u32::try_from(left).unwrap_or(u32::MAX));
    }
    if !v5 {
        return out;
    }
    let pp = &mut out.properties;
    pp.content_type = p.content_type.map(|c| c.as_str().to_string());
    pp.response_topic = p
        .reply_to
        .and_then(|r| TopicName::new(topic::from_routing_key(r.as_str())).ok());
    pp.correlation_data = p.correlation_id.map(Bytes::from);
    if let Some(h) = p.headers {
        for (k, v) in h.iter() {
            match k.as_str() {
                QOS_HEADER | RETAIN_HEADER => {}
                FORMAT_HEADER => {
                    pp.payload_format_indicator = Some(if v.as_i64() == Some(1) {
                        PayloadFormat::Utf8
                    } else {
                        PayloadFormat::Unspecified
                    });
                }
                CORRELATION_HEADER => {
                    if let Some(b) = v.as_bytes() {
                        pp.correlation_data = Some(Bytes::copy_from_slice(b));
                    }
                }
                key => {
                    if let Some(text) = header_text(v) {
                        pp.user_properties.push((key.to_string(), text));
                    }
                }
            }
        }
    }
    out
}

/// A header value as user-property text (strings as they are, numbers and booleans printed).
fn header_text(v: &FieldValue) -> Option<String> {
    if let Some(s) = v.as_str() {
        return Some(s.to_string());
    }
    if let Some(i) = v.as_i64() {
        return Some(i.to_string());
    }
    v.as_bool().map(|b| b.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_cross_and_come_back() {
        let props = PublishProperties {
            content_type: Some("application/json".into()),
            correlation_data: Some(Bytes::from_static(b"req-1")),
            response_topic: Some(TopicName::new("reply/to/me").unwrap()),
            user_properties: vec![
                ("b".into(), "2".into()),
                ("a".into(), "1".into()),
                ("b".into(), "3".into()),
            ],
            message_expiry_interval: Some(60),
            payload_format_indicator: Some(PayloadFormat::Utf8),
            ..PublishProperties::default()
        };
        let raw = amqp_properties(QoS::ExactlyOnce, true, &props);
        let amqp = BasicProperties::decode(&raw).unwrap();
        assert_eq!(amqp.delivery_mode, Some(2));
        assert_eq!(amqp.reply_to.as_deref(), Some("reply.to.me"));
        assert_eq!(amqp.expiration.as_deref(), Some("60000"));
        let back = outgoing(&raw, Some(Duration::ZERO), true);
        assert_eq!(back.qos, QoS::ExactlyOnce);
        assert!(back.retain);
        assert!(!back.expired);
        let p = back.properties;
        assert_eq!(p.content_type, props.content_type);
        assert_eq!(p.correlation_data, props.correlation_data);
        assert_eq!(p.response_topic, props.response_topic);
        assert_eq!(p.user_properties, props.user_properties);
        assert_eq!(p.message_expiry_interval, Some(60));
        assert_eq!(p.payload_format_indicator, Some(PayloadFormat::Utf8));
    }

    #[test]
    fn plain_qos1_needs_no_decoding() {
        let raw = amqp_properties(QoS::AtLeastOnce, false, &PublishProperties::default());
        assert_eq!(&raw[..], &[0x10, 0x00, 0x02]);
        assert_eq!(
            outgoing(&raw, Some(Duration::ZERO), true).qos,
            QoS::AtLeastOnce
        );
    }
}

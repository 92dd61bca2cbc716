//! proptest strategies for valid packets of each protocol version: everything they generate
//! obeys the rules `encode` and `decode` enforce, so encode -> decode must give it back.

#![allow(dead_code)]

use bytes::Bytes;
use mqtt_wire::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use proptest::sample::select;

pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(VERSIONS.to_vec())
}

/// Strings with multi-byte characters, a BOM, separators; never U+0000.
pub fn string() -> impl Strategy<Value = String> {
    "[a-z0-9 /_é€\u{feff}\u{10348}]{0,10}"
}

pub fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

pub fn user_properties() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((string(), string()), 0..3)
}

pub fn topic_name() -> impl Strategy<Value = TopicName> {
    "[a-z0-9/$ é]{1,12}".prop_map(|s| TopicName::new(s).expect("no wildcards, not empty"))
}

pub fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![Just("+".to_string()), "[a-z$]{0,3}"];
    let plain = (vec(level, 1..4), any::<bool>()).prop_map(|(levels, hash)| {
        let mut f = levels.join("/");
        if hash {
            f.push_str("/#");
        }
        f
    });
    let filter = prop_oneof![Just("#".to_string()), plain];
    (of("[a-z]{1,4}"), filter).prop_filter_map("valid filter", |(group, f)| {
        let f = match group {
            Some(g) => format!("$share/{g}/{f}"),
            None => f,
        };
        TopicFilter::new(f).ok()
    })
}

pub fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

pub fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

pub fn non_zero_u16() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

pub fn subscription_id() -> impl Strategy<Value = u32> {
    1..=MAX_VAR_INT
}

pub fn payload_format() -> impl Strategy<Value = PayloadFormat> {
    select(vec![PayloadFormat::Unspecified, PayloadFormat::Utf8])
}

/// The reason codes MQTT 5.0 allows in `packet_type`.
pub fn reason(packet_type: PacketType) -> impl Strategy<Value = ReasonCode> {
    let allowed: Vec<ReasonCode> = (0..=255u8)
        .filter_map(ReasonCode::from_u8)
        .filter(|c| c.allowed_in(packet_type))
        .collect();
    select(allowed)
}

fn v5(version: ProtocolVersion) -> bool {
    version == ProtocolVersion::V5
}

pub fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (of(string()), user_properties()).prop_map(|(reason_string, user_properties)| AckProperties {
        reason_string,
        user_properties,
    })
}

pub fn connect(version: ProtocolVersion) -> impl Strategy<Value = Connect> {
    let will_properties = (
        of(any::<u32>()),
        of(payload_format()),
        of(any::<u32>()),
        of(string()),
        of(topic_name()),
        of(binary()),
        user_properties(),
    )
        .prop_map(|(d, f, e, ct, rt, cd, up)| WillProperties {
            will_delay_interval: d,
            payload_format_indicator: f,
            message_expiry_interval: e,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
        });
    let will = (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        will_properties,
    )
        .prop_map(move |(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties: if v5(version) {
                properties
            } else {
                WillProperties::default()
            },
        });
    let properties = (
        of(any::<u32>()),
        of(non_zero_u16()),
        of(1..=u32::MAX),
        of(any::<u16>()),
        of(any::<bool>()),
        of(any::<bool>()),
        user_properties(),
        of((string(), of(binary()))),
    )
        .prop_map(|(se, rm, mps, tam, rri, rpi, up, auth)| ConnectProperties {
            session_expiry_interval: se,
            receive_maximum: rm,
            maximum_packet_size: mps,
            topic_alias_maximum: tam,
            request_response_information: rri,
            request_problem_information: rpi,
            user_properties: up,
            authentication_data: auth.as_ref().and_then(|(_, d)| d.clone()),
            authentication_method: auth.map(|(m, _)| m),
        });
    (
        any::<bool>(),
        any::<u16>(),
        string(),
        of(will),
        of(string()),
        of(binary()),
        properties,
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    // 3.x cannot carry a password without a user name.
                    password: if v5(version) || username.is_some() {
                        password
                    } else {
                        None
                    },
                    username,
                    properties: if v5(version) {
                        properties
                    } else {
                        ConnectProperties::default()
                    },
                }
            },
        )
}

pub fn connack(version: ProtocolVersion) -> impl Strategy<Value = ConnAck> {
    let code = match version {
        ProtocolVersion::V5 => reason(PacketType::ConnAck).boxed(),
        _ => (0..=5u8)
            .prop_map(|c| ReasonCode::from(ConnectReturnCode::from_u8(c).expect("0-5")))
            .boxed(),
    };
    let properties = (
        (
            of(any::<u32>()),
            of(non_zero_u16()),
            of(select(vec![QoS::AtMostOnce, QoS::AtLeastOnce])),
            of(any::<bool>()),
            of(1..=u32::MAX),
            of(string()),
            of(any::<u16>()),
            of(string()),
            user_properties(),
        ),
        (
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<u16>()),
            of(string()),
            of(string()),
            of(string()),
            of(binary()),
        ),
    )
        .prop_map(
            |((se, rm, mq, ra, mps, aci, tam, rs, up), (wsa, sia, ssa, ska, ri, sr, am, ad))| {
                ConnAckProperties {
                    session_expiry_interval: se,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: up,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: am,
                    authentication_data: ad,
                }
            },
        );
    (any::<bool>(), code, properties).prop_map(move |(session_present, code, properties)| ConnAck {
        session_present: session_present && !code.is_error() && version != ProtocolVersion::V3_1,
        code,
        properties: if v5(version) {
            properties
        } else {
            ConnAckProperties::default()
        },
    })
}

pub fn publish(version: ProtocolVersion) -> impl Strategy<Value = Publish> {
    let properties = (
        of(payload_format()),
        of(any::<u32>()),
        of(non_zero_u16()),
        of(topic_name()),
        of(binary()),
        user_properties(),
        vec(subscription_id(), 0..3),
        of(string()),
    )
        .prop_map(|(pf, me, ta, rt, cd, up, si, ct)| PublishProperties {
            payload_format_indicator: pf,
            message_expiry_interval: me,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
            subscription_identifiers: si,
            content_type: ct,
        });
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        of(topic_name()),
        packet_id(),
        properties,
        binary(),
    )
        .prop_map(move |(dup, qos, retain, topic, id, properties, payload)| {
            let properties = if v5(version) {
                properties
            } else {
                PublishProperties::default()
            };
            // Only a 5.0 PUBLISH with a Topic Alias may leave the topic out.
            let topic = match topic {
                None if properties.topic_alias.is_some() => None,
                None => Some(TopicName::new("fallback").expect("valid")),
                some => some,
            };
            let has_id = qos != QoS::AtMostOnce;
            Publish {
                dup: dup && has_id,
                qos,
                retain,
                topic,
                packet_id: has_id.then_some(id),
                properties,
                payload,
            }
        })
}

fn ack_parts(
    version: ProtocolVersion,
    packet_type: PacketType,
) -> impl Strategy<Value = (u16, ReasonCode, AckProperties)> {
    (packet_id(), reason(packet_type), ack_properties()).prop_map(move |(id, r, p)| {
        if v5(version) {
            (id, r, p)
        } else {
            (id, ReasonCode::Success, AckProperties::default())
        }
    })
}

pub fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    let options = (
        qos(),
        any::<bool>(),
        any::<bool>(),
        select(vec![
            RetainHandling::SendAtSubscribe,
            RetainHandling::SendIfNew,
            RetainHandling::DoNotSend,
        ]),
    );
    let entry = (topic_filter(), options).prop_map(move |(f, (qos, nl, rap, rh))| {
        let options = if v5(version) {
            SubscriptionOptions {
                qos,
                no_local: nl && f.shared().is_none(),
                retain_as_published: rap,
                retain_handling: rh,
            }
        } else {
            SubscriptionOptions::new(qos)
        };
        (f, options)
    });
    (
        packet_id(),
        of(subscription_id()),
        user_properties(),
        vec(entry, 1..4),
    )
        .prop_map(move |(packet_id, si, up, filters)| Subscribe {
            packet_id,
            properties: if v5(version) {
                SubscribeProperties {
                    subscription_identifier: si,
                    user_properties: up,
                }
            } else {
                SubscribeProperties::default()
            },
            filters,
        })
}

pub fn suback(version: ProtocolVersion) -> impl Strategy<Value = SubAck> {
    let code = match version {
        ProtocolVersion::V5 => reason(PacketType::SubAck).boxed(),
        _ => select(vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ])
        .boxed(),
    };
    (packet_id(), ack_properties(), vec(code, 0..4)).prop_map(move |(packet_id, p, reasons)| {
        SubAck {
            packet_id,
            properties: if v5(version) {
                p
            } else {
                AckProperties::default()
            },
            reasons,
        }
    })
}

pub fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Unsubscribe> {
    (packet_id(), user_properties(), vec(topic_filter(), 1..4)).prop_map(
        move |(packet_id, up, filters)| Unsubscribe {
            packet_id,
            properties: UnsubscribeProperties {
                user_properties: if v5(version) { up } else { vec![] },
            },
            filters,
        },
    )
}

pub fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = UnsubAck> {
    (
        packet_id(),
        ack_properties(),
        vec(reason(PacketType::UnsubAck), 0..4),
    )
        .prop_map(move |(packet_id, p, reasons)| {
            if v5(version) {
                UnsubAck {
                    packet_id,
                    properties: p,
                    reasons,
                }
            } else {
                UnsubAck {
                    packet_id,
                    properties: AckProperties::default(),
                    reasons: vec![],
                }
            }
        })
}

pub fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Disconnect> {
    let properties = (
        of(any::<u32>()),
        of(string()),
        user_properties(),
        of(string()),
    )
        .prop_map(|(se, rs, up, sr)| DisconnectProperties {
            session_expiry_interval: se,
            reason_string: rs,
            user_properties: up,
            server_reference: sr,
        });
    (reason(PacketType::Disconnect), properties).prop_map(move |(reason, properties)| {
        if v5(version) {
            Disconnect { reason, properties }
        } else {
            Disconnect::default()
        }
    })
}

pub fn auth() -> impl Strategy<Value = Auth> {
    (
        reason(PacketType::Auth),
        of(string()),
        of(binary()),
        of(string()),
        user_properties(),
    )
        .prop_map(|(reason, am, ad, rs, up)| Auth {
            reason,
            properties: AuthProperties {
                authentication_method: am,
                authentication_data: ad,
                reason_string: rs,
                user_properties: up,
            },
        })
}

/// Any valid packet for `version`.
pub fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut choices = vec![
        connect(version).prop_map(Packet::Connect).boxed(),
        connack(version).prop_map(Packet::ConnAck).boxed(),
        publish(version).prop_map(Packet::Publish).boxed(),
        ack_parts(version, PacketType::PubAck)
            .prop_map(|(packet_id, reason, properties)| {
                Packet::PubAck(PubAck {
                    packet_id,
                    reason,
                    properties,
                })
            })
            .boxed(),
        ack_parts(version, PacketType::PubRec)
            .prop_map(|(packet_id, reason, properties)| {
                Packet::PubRec(PubRec {
                    packet_id,
                    reason,
                    properties,
                })
            })
            .boxed(),
        ack_parts(version, PacketType::PubRel)
            .prop_map(|(packet_id, reason, properties)| {
                Packet::PubRel(PubRel {
                    packet_id,
                    reason,
                    properties,
                })
            })
            .boxed(),
        ack_parts(version, PacketType::PubComp)
            .prop_map(|(packet_id, reason, properties)| {
                Packet::PubComp(PubComp {
                    packet_id,
                    reason,
                    properties,
                })
            })
            .boxed(),
        subscribe(version).prop_map(Packet::Subscribe).boxed(),
        suback(version).prop_map(Packet::SubAck).boxed(),
        unsubscribe(version).prop_map(Packet::Unsubscribe).boxed(),
        unsuback(version).prop_map(Packet::UnsubAck).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(version).prop_map(Packet::Disconnect).boxed(),
    ];
    if v5(version) {
        choices.push(auth().prop_map(Packet::Auth).boxed());
    }
    proptest::strategy::Union::new(choices).boxed()
}

/// A version and a valid packet for it.
pub fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}

//! Strategies generating every AMQP value this crate encodes: all 66 methods, content
//! properties, field tables (non-NaN floats, since NaN != NaN) and frames.

use amqp_wire::*;
use bytes::Bytes;
use proptest::collection::vec;
use proptest::num::{f32, f64};
use proptest::prelude::*;
use proptest::strategy::Union;

/// Any UTF-8 string of at most 255 bytes (63 chars of at most 4 bytes each).
pub fn short_string() -> impl Strategy<Value = ShortString> {
    "\\PC{0,63}".prop_map(|s| ShortString::new(&s).unwrap())
}

pub fn long_string() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn leaf_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        any::<u64>().prop_map(FieldValue::U64),
        (f32::NORMAL | f32::SUBNORMAL | f32::ZERO | f32::INFINITE).prop_map(FieldValue::F32),
        (f64::NORMAL | f64::SUBNORMAL | f64::ZERO | f64::INFINITE).prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        long_string().prop_map(FieldValue::LongString),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
        long_string().prop_map(FieldValue::ByteArray),
    ]
}

fn table_of(value: impl Strategy<Value = FieldValue>) -> impl Strategy<Value = FieldTable> {
    vec((short_string(), value), 0..6).prop_map(|entries| entries.into_iter().collect())
}

pub fn field_value() -> impl Strategy<Value = FieldValue> {
    leaf_value().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(FieldValue::Array),
            table_of(inner).prop_map(FieldValue::Table),
        ]
    })
}

pub fn field_table() -> impl Strategy<Value = FieldTable> {
    table_of(field_value())
}

pub fn basic_properties() -> BoxedStrategy<BasicProperties> {
    let s = || proptest::option::of(short_string());
    let strings = (s(), s(), s(), s(), s(), s(), s(), s(), s(), s(), s());
    let others = (
        proptest::option::of(field_table()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u64>()),
    );
    (strings, others)
        .prop_map(|(strings, others)| {
            let (
                content_type,
                content_encoding,
                correlation_id,
                reply_to,
                expiration,
                message_id,
                kind,
                user_id,
                app_id,
                cluster_id,
                _,
            ) = strings;
            let (headers, delivery_mode, priority, timestamp) = others;
            BasicProperties {
                content_type,
                content_encoding,
                headers,
                delivery_mode,
                priority,
                correlation_id,
                reply_to,
                expiration,
                message_id,
                timestamp,
                kind,
                user_id,
                app_id,
                cluster_id,
            }
        })
        .boxed()
}

/// A strategy for one method variant from strategies for each of its fields.
macro_rules! arb {
    ($variant:ident {}) => {
        Just(Method::$variant($variant {})).boxed()
    };
    ($variant:ident { $($field:ident: $strat:expr),+ $(,)? }) => {
        ($($strat,)+)
            .prop_map(|($($field,)+)| Method::$variant($variant { $($field),+ }))
            .boxed()
    };
}

/// Any of the 66 methods with arbitrary arguments.
pub fn method() -> impl Strategy<Value = Method> {
    let s = short_string;
    let l = long_string;
    let t = field_table;
    let b = any::<bool>;
    Union::new([
        arb!(ConnectionStart {
            version_major: any::<u8>(),
            version_minor: any::<u8>(),
            server_properties: t(),
            mechanisms: l(),
            locales: l(),
        }),
        arb!(ConnectionStartOk {
            client_properties: t(),
            mechanism: s(),
            response: l(),
            locale: s()
        }),
        arb!(ConnectionSecure { challenge: l() }),
        arb!(ConnectionSecureOk { response: l() }),
        arb!(ConnectionTune {
            channel_max: any::<u16>(),
            frame_max: any::<u32>(),
            heartbeat: any::<u16>()
        }),
        arb!(ConnectionTuneOk {
            channel_max: any::<u16>(),
            frame_max: any::<u32>(),
            heartbeat: any::<u16>()
        }),
        arb!(ConnectionOpen { virtual_host: s() }),
        arb!(ConnectionOpenOk {}),
        arb!(ConnectionClose {
            reply_code: any::<u16>(),
            reply_text: s(),
            class_id: any::<u16>(),
            method_id: any::<u16>()
        }),
        arb!(ConnectionCloseOk {}),
        arb!(ConnectionBlocked { reason: s() }),
        arb!(ConnectionUnblocked {}),
        arb!(ConnectionUpdateSecret {
            new_secret: l(),
            reason: s()
        }),
        arb!(ConnectionUpdateSecretOk {}),
        arb!(ChannelOpen {}),
        arb!(ChannelOpenOk {}),
        arb!(ChannelFlow { active: b() }),
        arb!(ChannelFlowOk { active: b() }),
        arb!(ChannelClose {
            reply_code: any::<u16>(),
            reply_text: s(),
            class_id: any::<u16>(),
            method_id: any::<u16>()
        }),
        arb!(ChannelCloseOk {}),
        arb!(AccessRequest {
            realm: s(),
            exclusive: b(),
            passive: b(),
            active: b(),
            write: b(),
            read: b()
        }),
        arb!(AccessRequestOk {
            ticket: any::<u16>()
        }),
        arb!(ExchangeDeclare {
            exchange: s(),
            kind: s(),
            passive: b(),
            durable: b(),
            auto_delete: b(),
            internal: b(),
            no_wait: b(),
            arguments: t(),
        }),
        arb!(ExchangeDeclareOk {}),
        arb!(ExchangeDelete {
            exchange: s(),
            if_unused: b(),
            no_wait: b()
        }),
        arb!(ExchangeDeleteOk {}),
        arb!(ExchangeBind {
            destination: s(),
            source: s(),
            routing_key: s(),
            no_wait: b(),
            arguments: t()
        }),
        arb!(ExchangeBindOk {}),
        arb!(ExchangeUnbind {
            destination: s(),
            source: s(),
            routing_key: s(),
            no_wait: b(),
            arguments: t()
        }),
        arb!(ExchangeUnbindOk {}),
        arb!(QueueDeclare {
            queue: s(),
            passive: b(),
            durable: b(),
            exclusive: b(),
            auto_delete: b(),
            no_wait: b(),
            arguments: t(),
        }),
        arb!(QueueDeclareOk {
            queue: s(),
            message_count: any::<u32>(),
            consumer_count: any::<u32>()
        }),
        arb!(QueueBind {
            queue: s(),
            exchange: s(),
            routing_key: s(),
            no_wait: b(),
            arguments: t()
        }),
        arb!(QueueBindOk {}),
        arb!(QueuePurge {
            queue: s(),
            no_wait: b()
        }),
        arb!(QueuePurgeOk {
            message_count: any::<u32>()
        }),
        arb!(QueueDelete {
            queue: s(),
            if_unused: b(),
            if_empty: b(),
            no_wait: b()
        }),
        arb!(QueueDeleteOk {
            message_count: any::<u32>()
        }),
        arb!(QueueUnbind {
            queue: s(),
            exchange: s(),
            routing_key: s(),
            arguments: t()
        }),
        arb!(QueueUnbindOk {}),
        arb!(BasicQos {
            prefetch_size: any::<u32>(),
            prefetch_count: any::<u16>(),
            global: b()
        }),
        arb!(BasicQosOk {}),
        arb!(BasicConsume {
            queue: s(),
            consumer_tag: s(),
            no_local: b(),
            no_ack: b(),
            exclusive: b(),
            no_wait: b(),
            arguments: t(),
        }),
        arb!(BasicConsumeOk { consumer_tag: s() }),
        arb!(BasicCancel {
            consumer_tag: s(),
            no_wait: b()
        }),
        arb!(BasicCancelOk { consumer_tag: s() }),
        arb!(BasicPublish {
            exchange: s(),
            routing_key: s(),
            mandatory: b(),
            immediate: b()
        }),
        arb!(BasicReturn {
            reply_code: any::<u16>(),
            reply_text: s(),
            exchange: s(),
            routing_key: s()
        }),
        arb!(BasicDeliver {
            consumer_tag: s(),
            delivery_tag: any::<u64>(),
            redelivered: b(),
            exchange: s(),
            routing_key: s(),
        }),
        arb!(BasicGet {
            queue: s(),
            no_ack: b()
        }),
        arb!(BasicGetOk {
            delivery_tag: any::<u64>(),
            redelivered: b(),
            exchange: s(),
            routing_key: s(),
            message_count: any::<u32>(),
        }),
        arb!(BasicGetEmpty {}),
        arb!(BasicAck {
            delivery_tag: any::<u64>(),
            multiple: b()
        }),
        arb!(BasicReject {
            delivery_tag: any::<u64>(),
            requeue: b()
        }),
        arb!(BasicRecoverAsync { requeue: b() }),
        arb!(BasicRecover { requeue: b() }),
        arb!(BasicRecoverOk {}),
        arb!(BasicNack {
            delivery_tag: any::<u64>(),
            multiple: b(),
            requeue: b()
        }),
        arb!(TxSelect {}),
        arb!(TxSelectOk {}),
        arb!(TxCommit {}),
        arb!(TxCommitOk {}),
        arb!(TxRollback {}),
        arb!(TxRollbackOk {}),
        arb!(ConfirmSelect { no_wait: b() }),
        arb!(ConfirmSelectOk {}),
    ])
}

/// Any frame that survives an encode/decode round trip.
pub fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        4 => (any::<u16>(), method()).prop_map(|(channel, method)| Frame::Method { channel, method }),
        2 => (any::<u16>(), any::<u16>(), any::<u64>(), basic_properties()).prop_map(
            |(channel, class_id, body_size, props)| Frame::Header {
                channel,
                class_id,
                body_size,
                properties: props.to_bytes(),
            }
        ),
        2 => (any::<u16>(), long_string()).prop_map(|(channel, payload)| Frame::Body { channel, payload }),
        1 => any::<u16>().prop_map(|channel| Frame::Heartbeat { channel }),
    ]
}

//! The strategy generating every command (requests, responses, server commands, code-only
//! responses, unknown keys), each variant equally likely.

use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use proptest::strategy::Union;
use stream_wire::*;

use crate::strategies::*;

fn command_version() -> impl Strategy<Value = CommandVersion> {
    (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(key, min_version, max_version)| {
        CommandVersion {
            key,
            min_version,
            max_version,
        }
    })
}

fn plain_response() -> impl Strategy<Value = Command> {
    let keys = vec![
        key::DECLARE_PUBLISHER,
        key::DELETE_PUBLISHER,
        key::SUBSCRIBE,
        key::UNSUBSCRIBE,
        key::CREATE,
        key::DELETE,
        key::CLOSE,
        key::CREATE_SUPER_STREAM,
        key::DELETE_SUPER_STREAM,
    ];
    (prop::sample::select(keys), any::<u32>(), code())
        .prop_map(|(k, corr, code)| Command::Response(Response::new(k, corr, code)))
}

/// Every command, each variant equally likely.
pub fn command() -> impl Strategy<Value = Command> {
    let c = || any::<u32>();
    let arms: Vec<BoxedStrategy<Command>> = vec![
        (c(), any::<u8>(), string(), string())
            .prop_map(|(correlation_id, publisher_id, reference, stream)| {
                DeclarePublisher {
                    correlation_id,
                    publisher_id,
                    reference,
                    stream,
                }
                .into()
            })
            .boxed(),
        (any::<u8>(), any::<bool>(), vec(published_message(), 0..5))
            .prop_map(|(id, filtered, messages)| {
                Publish::with_version(id, filtered, &messages).into()
            })
            .boxed(),
        (any::<u8>(), vec(any::<u64>(), 0..8))
            .prop_map(|(publisher_id, publishing_ids)| {
                PublishConfirm {
                    publisher_id,
                    publishing_ids,
                }
                .into()
            })
            .boxed(),
        (any::<u8>(), vec((any::<u64>(), code()), 0..5))
            .prop_map(|(publisher_id, errors)| {
                let errors = errors
                    .into_iter()
                    .map(|(publishing_id, code)| PublishingError {
                        publishing_id,
                        code,
                    })
                    .collect();
                PublishError {
                    publisher_id,
                    errors,
                }
                .into()
            })
            .boxed(),
        (c(), string(), string())
            .prop_map(|(correlation_id, reference, stream)| {
                QueryPublisherSequence {
                    correlation_id,
                    reference,
                    stream,
                }
                .into()
            })
            .boxed(),
        (c(), code(), any::<u64>())
            .prop_map(|(correlation_id, code, sequence)| {
                QueryPublisherSequenceResponse {
                    correlation_id,
                    code,
                    sequence,
                }
                .into()
            })
            .boxed(),
        (c(), any::<u8>())
            .prop_map(|(correlation_id, publisher_id)| {
                DeletePublisher {
                    correlation_id,
                    publisher_id,
                }
                .into()
            })
            .boxed(),
        (
            c(),
            any::<u8>(),
            string(),
            offset_spec(),
            any::<u16>(),
            properties(),
        )
            .prop_map(
                |(correlation_id, subscription_id, stream, offset, credit, properties)| {
                    Subscribe {
                        correlation_id,
                        subscription_id,
                        stream,
                        offset,
                        credit,
                        properties,
                    }
                    .into()
                },
            )
            .boxed(),
        (any::<u8>(), of(any::<u64>()), chunk())
            .prop_map(|(subscription_id, committed_chunk_id, chunk)| {
                Deliver {
                    subscription_id,
                    committed_chunk_id,
                    chunk,
                }
                .into()
            })
            .boxed(),
        (any::<u8>(), any::<u16>())
            .prop_map(|(subscription_id, credit)| {
                Credit {
                    subscription_id,
                    credit,
                }
                .into()
            })
            .boxed(),
        (code(), any::<u8>())
            .prop_map(|(code, subscription_id)| {
                CreditResponse {
                    code,
                    subscription_id,
                }
                .into()
            })
            .boxed(),
        (string(), string(), any::<u64>())
            .prop_map(|(reference, stream, offset)| {
                StoreOffset {
                    reference,
                    stream,
                    offset,
                }
                .into()
            })
            .boxed(),
        (c(), string(), string())
            .prop_map(|(correlation_id, reference, stream)| {
                QueryOffset {
                    correlation_id,
                    reference,
                    stream,
                }
                .into()
            })
            .boxed(),
        (c(), code(), any::<u64>())
            .prop_map(|(correlation_id, code, offset)| {
                QueryOffsetResponse {
                    correlation_id,
                    code,
                    offset,
                }
                .into()
            })
            .boxed(),
        (c(), any::<u8>())
            .prop_map(|(correlation_id, subscription_id)| {
                Unsubscribe {
                    correlation_id,
                    subscription_id,
                }
                .into()
            })
            .boxed(),
        (c(), string(), properties())
            .prop_map(|(correlation_id, stream, arguments)| {
                Create {
                    correlation_id,
                    stream,
                    arguments,
                }
                .into()
            })
            .boxed(),
        (c(), string())
            .prop_map(|(correlation_id, stream)| {
                Delete {
                    correlation_id,
                    stream,
                }
                .into()
            })
            .boxed(),
        (c(), strings())
            .prop_map(|(correlation_id, streams)| {
                Metadata {
                    correlation_id,
                    streams,
                }
                .into()
            })
            .boxed(),
        (
            c(),
            vec((any::<u16>(), string(), any::<u32>()), 0..4),
            vec(
                (string(), code(), any::<u16>(), vec(any::<u16>(), 0..4)),
                0..4,
            ),
        )
            .prop_map(|(correlation_id, brokers, streams)| {
                MetadataResponse {
                    correlation_id,
                    brokers: brokers
                        .into_iter()
                        .map(|(reference, host, port)| Broker {
                            reference,
                            host,
                            port,
                        })
                        .collect(),
                    streams: streams
                        .into_iter()
                        .map(|(stream, code, leader, replicas)| StreamMetadata {
                            stream,
                            code,
                            leader,
                            replicas,
                        })
                        .collect(),
                }
                .into()
            })
            .boxed(),
        (code(), string())
            .prop_map(|(code, stream)| MetadataUpdate { code, stream }.into())
            .boxed(),
        (c(), properties())
            .prop_map(|(correlation_id, properties)| {
                PeerProperties {
                    correlation_id,
                    properties,
                }
                .into()
            })
            .boxed(),
        (c(), code(), properties())
            .prop_map(|(correlation_id, code, properties)| {
                PeerPropertiesResponse {
                    correlation_id,
                    code,
                    properties,
                }
                .into()
            })
            .boxed(),
        c().prop_map(|correlation_id| SaslHandshake { correlation_id }.into())
            .boxed(),
        (c(), code(), strings())
            .prop_map(|(correlation_id, code, mechanisms)| {
                SaslHandshakeResponse {
                    correlation_id,
                    code,
                    mechanisms,
                }
                .into()
            })
            .boxed(),
        (c(), string(), of(bytes(32)))
            .prop_map(|(correlation_id, mechanism, data)| {
                SaslAuthenticate {
                    correlation_id,
                    mechanism,
                    data,
                }
                .into()
            })
            .boxed(),
        (c(), code(), of(bytes(32)))
            .prop_map(|(correlation_id, code, challenge)| {
                SaslAuthenticateResponse {
                    correlation_id,
                    code,
                    challenge,
                }
                .into()
            })
            .boxed(),
        (any::<u32>(), any::<u32>())
            .prop_map(|(frame_max, heartbeat)| {
                Tune {
                    frame_max,
                    heartbeat,
                }
                .into()
            })
            .boxed(),
        (any::<u32>(), any::<u32>())
            .prop_map(|(frame_max, heartbeat)| {
                TuneResponse {
                    frame_max,
                    heartbeat,
                }
                .into()
            })
            .boxed(),
        (c(), string())
            .prop_map(|(correlation_id, virtual_host)| {
                Open {
                    correlation_id,
                    virtual_host,
                }
                .into()
            })
            .boxed(),
        (c(), code(), properties())
            .prop_map(|(correlation_id, code, properties)| {
                OpenResponse {
                    correlation_id,
                    code,
                    properties,
                }
                .into()
            })
            .boxed(),
        (c(), code(), string())
            .prop_map(|(correlation_id, code, reason)| {
                Close {
                    correlation_id,
                    code,
                    reason,
                }
                .into()
            })
            .boxed(),
        Just(Command::Heartbeat(Heartbeat)).boxed(),
        (c(), string(), string())
            .prop_map(|(correlation_id, routing_key, super_stream)| {
                Route {
                    correlation_id,
                    routing_key,
                    super_stream,
                }
                .into()
            })
            .boxed(),
        (c(), code(), strings())
            .prop_map(|(correlation_id, code, streams)| {
                RouteResponse {
                    correlation_id,
                    code,
                    streams,
                }
                .into()
            })
            .boxed(),
        (c(), string())
            .prop_map(|(correlation_id, super_stream)| {
                Partitions {
                    correlation_id,
                    super_stream,
                }
                .into()
            })
            .boxed(),
        (c(), code(), strings())
            .prop_map(|(correlation_id, code, streams)| {
                PartitionsResponse {
                    correlation_id,
                    code,
                    streams,
                }
                .into()
            })
            .boxed(),
        (c(), any::<u8>(), any::<bool>())
            .prop_map(|(correlation_id, subscription_id, active)| {
                ConsumerUpdate {
                    correlation_id,
                    subscription_id,
                    active,
                }
                .into()
            })
            .boxed(),
        (c(), code(), of(offset_spec()))
            .prop_map(|(correlation_id, code, offset)| {
                ConsumerUpdateResponse {
                    correlation_id,
                    code,
                    offset,
                }
                .into()
            })
            .boxed(),
        (c(), vec(command_version(), 0..6))
            .prop_map(|(correlation_id, commands)| {
                ExchangeCommandVersions {
                    correlation_id,
                    commands,
                }
                .into()
            })
            .boxed(),
        (c(), code(), vec(command_version(), 0..6))
            .prop_map(|(correlation_id, code, commands)| {
                ExchangeCommandVersionsResponse {
                    correlation_id,
                    code,
                    commands,
                }
                .into()
            })
            .boxed(),
        (c(), string())
            .prop_map(|(correlation_id, stream)| {
                StreamStats {
                    correlation_id,
                    stream,
                }
                .into()
            })
            .boxed(),
        (c(), code(), vec((string(), any::<i64>()), 0..5))
            .prop_map(|(correlation_id, code, stats)| {
                StreamStatsResponse {
                    correlation_id,
                    code,
                    stats,
                }
                .into()
            })
            .boxed(),
        (c(), string(), strings(), strings(), properties())
            .prop_map(
                |(correlation_id, name, partitions, binding_keys, arguments)| {
                    CreateSuperStream {
                        correlation_id,
                        name,
                        partitions,
                        binding_keys,
                        arguments,
                    }
                    .into()
                },
            )
            .boxed(),
        (c(), string())
            .prop_map(|(correlation_id, name)| {
                DeleteSuperStream {
                    correlation_id,
                    name,
                }
                .into()
            })
            .boxed(),
        (c(), string(), offset_spec(), properties())
            .prop_map(|(correlation_id, stream, offset, properties)| {
                ResolveOffsetSpec {
                    correlation_id,
                    stream,
                    offset,
                    properties,
                }
                .into()
            })
            .boxed(),
        (c(), code(), any::<u16>(), any::<u64>())
            .prop_map(|(correlation_id, code, offset_type, offset)| {
                ResolveOffsetSpecResponse {
                    correlation_id,
                    code,
                    offset_type,
                    offset,
                }
                .into()
            })
            .boxed(),
        plain_response().boxed(),
        (0x0020u16..0x7fff, any::<bool>(), bytes(32))
            .prop_map(|(k, response, content)| Command::Unknown {
                key: if response { k | RESPONSE_FLAG } else { k },
                version: 1,
                content,
            })
            .boxed(),
    ];
    Union::new(arms)
}

/// Every key the decoder knows, with the versions it reads.
pub fn known_key_and_version() -> impl Strategy<Value = (u16, u16)> {
    (1u16..=0x1f, any::<bool>(), 1u16..=2)
        .prop_map(|(k, response, v)| (if response { k | RESPONSE_FLAG } else { k }, v))
}

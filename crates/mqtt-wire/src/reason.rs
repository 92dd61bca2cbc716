//! Reason codes: every MQTT 5.0 reason code (section 2.4, table 2-6) as [`ReasonCode`], and
//! the MQTT 3.1.1 CONNACK return codes as [`ConnectReturnCode`].
//!
//! One enum serves every packet because the server mostly moves codes around (a decode error's
//! code goes into a DISCONNECT, an authorisation failure into a PUBACK or SUBACK). Which codes a
//! packet may carry is [`ReasonCode::allowed_in`]; the decoder rejects others and the encoder
//! refuses them. Byte 0x00 has three names in the spec (Success, Normal disconnection, Granted
//! QoS 0): it is [`ReasonCode::Success`], with [`ReasonCode::NORMAL_DISCONNECTION`] and
//! [`ReasonCode::GRANTED_QOS_0`] as aliases.
//!
//! MQTT 3.1.1 has codes only in CONNACK (0-5) and SUBACK (granted QoS or 0x80 Failure); the
//! encoder maps a 5.0 code down to those (see [`ConnectReturnCode::from`]) and drops it
//! everywhere else.

use crate::fixed_header::PacketType;
use crate::QoS;

macro_rules! reason_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// An MQTT 5.0 reason code (section 2.4). Values below 0x80 mean success, 0x80 and up
        /// failure.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum ReasonCode {
            $($(#[$doc])* $name = $value,)*
        }

        impl ReasonCode {
            /// The reason code with this byte value, if the spec defines one.
            pub fn from_u8(code: u8) -> Option<ReasonCode> {
                match code {
                    $($value => Some(ReasonCode::$name),)*
                    _ => None,
                }
            }
        }
    };
}

reason_codes! {
    /// 0x00: Success (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH), Normal
    /// disconnection (DISCONNECT), Granted QoS 0 (SUBACK).
    Success = 0x00,
    /// 0x01: Granted QoS 1 (SUBACK).
    GrantedQoS1 = 0x01,
    /// 0x02: Granted QoS 2 (SUBACK).
    GrantedQoS2 = 0x02,
    /// 0x04: Disconnect with Will Message (DISCONNECT, client).
    DisconnectWithWillMessage = 0x04,
    /// 0x10: No matching subscribers (PUBACK, PUBREC).
    NoMatchingSubscribers = 0x10,
    /// 0x11: No subscription existed (UNSUBACK).
    NoSubscriptionExisted = 0x11,
    /// 0x18: Continue authentication (AUTH).
    ContinueAuthentication = 0x18,
    /// 0x19: Re-authenticate (AUTH).
    ReAuthenticate = 0x19,
    /// 0x80: Unspecified error. Also what a 3.1.1 SUBACK "Failure" (0x80) decodes to.
    UnspecifiedError = 0x80,
    /// 0x81: Malformed Packet.
    MalformedPacket = 0x81,
    /// 0x82: Protocol Error.
    ProtocolError = 0x82,
    /// 0x83: Implementation specific error.
    ImplementationSpecificError = 0x83,
    /// 0x84: Unsupported Protocol Version (CONNACK).
    UnsupportedProtocolVersion = 0x84,
    /// 0x85: Client Identifier not valid (CONNACK).
    ClientIdentifierNotValid = 0x85,
    /// 0x86: Bad User Name or Password (CONNACK).
    BadUserNameOrPassword = 0x86,
    /// 0x87: Not authorized.
    NotAuthorized = 0x87,
    /// 0x88: Server unavailable (CONNACK).
    ServerUnavailable = 0x88,
    /// 0x89: Server busy.
    ServerBusy = 0x89,
    /// 0x8A: Banned (CONNACK).
    Banned = 0x8a,
    /// 0x8B: Server shutting down (DISCONNECT).
    ServerShuttingDown = 0x8b,
    /// 0x8C: Bad authentication method.
    BadAuthenticationMethod = 0x8c,
    /// 0x8D: Keep Alive timeout (DISCONNECT).
    KeepAliveTimeout = 0x8d,
    /// 0x8E: Session taken over (DISCONNECT).
    SessionTakenOver = 0x8e,
    /// 0x8F: Topic Filter invalid.
    TopicFilterInvalid = 0x8f,
    /// 0x90: Topic Name invalid.
    TopicNameInvalid = 0x90,
    /// 0x91: Packet Identifier in use.
    PacketIdentifierInUse = 0x91,
    /// 0x92: Packet Identifier not found (PUBREL, PUBCOMP).
    PacketIdentifierNotFound = 0x92,
    /// 0x93: Receive Maximum exceeded (DISCONNECT).
    ReceiveMaximumExceeded = 0x93,
    /// 0x94: Topic Alias invalid (DISCONNECT).
    TopicAliasInvalid = 0x94,
    /// 0x95: Packet too large.
    PacketTooLarge = 0x95,
    /// 0x96: Message rate too high (DISCONNECT).
    MessageRateTooHigh = 0x96,
    /// 0x97: Quota exceeded.
    QuotaExceeded = 0x97,
    /// 0x98: Administrative action (DISCONNECT).
    AdministrativeAction = 0x98,
    /// 0x99: Payload format invalid.
    PayloadFormatInvalid = 0x99,
    /// 0x9A: Retain not supported.
    RetainNotSupported = 0x9a,
    /// 0x9B: QoS not supported.
    QoSNotSupported = 0x9b,
    /// 0x9C: Use another server.
    UseAnotherServer = 0x9c,
    /// 0x9D: Server moved.
    ServerMoved = 0x9d,
    /// 0x9E: Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9e,
    /// 0x9F: Connection rate exceeded.
    ConnectionRateExceeded = 0x9f,
    /// 0xA0: Maximum connect time (DISCONNECT).
    MaximumConnectTime = 0xa0,
    /// 0xA1: Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xa1,
    /// 0xA2: Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xa2,
}

impl ReasonCode {
    /// 0x00 as a DISCONNECT reason.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode::Success;
    /// 0x00 as a SUBACK reason.
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode::Success;

    /// The byte on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// True for 0x80 and above.
    pub fn is_error(self) -> bool {
        self.code() >= 0x80
    }

    /// The SUBACK code granting `qos`.
    pub fn granted(qos: QoS) -> ReasonCode {
        match qos {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        }
    }

    /// The QoS a SUBACK code grants, `None` for a failure.
    pub fn granted_qos(self) -> Option<QoS> {
        match self {
            ReasonCode::Success => Some(QoS::AtMostOnce),
            ReasonCode::GrantedQoS1 => Some(QoS::AtLeastOnce),
            ReasonCode::GrantedQoS2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// Whether an MQTT 5.0 packet of this type may carry this code (the per-packet tables of
    /// chapter 3, e.g. [MQTT-3.4.2-1] "the sender of PUBACK MUST use one of the PUBACK Reason
    /// Codes"). False for packet types that have no reason code.
    pub fn allowed_in(self, packet_type: PacketType) -> bool {
        use ReasonCode::*;
        match packet_type {
            // Table 3-1.
            PacketType::ConnAck => matches!(
                self,
                Success
                    | UnspecifiedError
                    | MalformedPacket
                    | ProtocolError
                    | ImplementationSpecificError
                    | UnsupportedProtocolVersion
                    | ClientIdentifierNotValid
                    | BadUserNameOrPassword
                    | NotAuthorized
                    | ServerUnavailable
                    | ServerBusy
                    | Banned
                    | BadAuthenticationMethod
                    | TopicNameInvalid
                    | PacketTooLarge
                    | QuotaExceeded
                    | PayloadFormatInvalid
                    | RetainNotSupported
                    | QoSNotSupported
                    | UseAnotherServer
                    | ServerMoved
                    | ConnectionRateExceeded
            ),
            // Tables 3-4 and 3-5.
            PacketType::PubAck | PacketType::PubRec => matches!(
                self,
                Success
                    | NoMatchingSubscribers
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicNameInvalid
                    | PacketIdentifierInUse
                    | QuotaExceeded
                    | PayloadFormatInvalid
            ),
            // Tables 3-6 and 3-7.
            PacketType::PubRel | PacketType::PubComp => {
                matches!(self, Success | PacketIdentifierNotFound)
            }
            // Table 3-8.
            PacketType::SubAck => matches!(
                self,
                Success
                    | GrantedQoS1
                    | GrantedQoS2
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicFilterInvalid
                    | PacketIdentifierInUse
                    | QuotaExceeded
                    | SharedSubscriptionsNotSupported
                    | SubscriptionIdentifiersNotSupported
                    | WildcardSubscriptionsNotSupported
            ),
            // Table 3-9.
            PacketType::UnsubAck => matches!(
                self,
                Success
                    | NoSubscriptionExisted
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicFilterInvalid
                    | PacketIdentifierInUse
            ),
            // Table 3-10.
            PacketType::Disconnect => matches!(
                self,
                Success
                    | DisconnectWithWillMessage
                    | UnspecifiedError
                    | MalformedPacket
                    | ProtocolError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | ServerBusy
                    | ServerShuttingDown
                    | KeepAliveTimeout
                    | SessionTakenOver
                    | TopicFilterInvalid
                    | TopicNameInvalid
                    | ReceiveMaximumExceeded
                    | TopicAliasInvalid
                    | PacketTooLarge
                    | MessageRateTooHigh
                    | QuotaExceeded
                    | AdministrativeAction
                    | PayloadFormatInvalid
                    | RetainNotSupported
                    | QoSNotSupported
                    | UseAnotherServer
                    | ServerMoved
                    | SharedSubscriptionsNotSupported
                    | ConnectionRateExceeded
                    | MaximumConnectTime
                    | SubscriptionIdentifiersNotSupported
                    | WildcardSubscriptionsNotSupported
            ),
            // Table 3-11.
            PacketType::Auth => matches!(self, Success | ContinueAuthentication | ReAuthenticate),
            _ => false,
        }
    }
}

impl Default for ReasonCode {
    /// Success / Normal disconnection / Granted QoS 0.
    fn default() -> Self {
        ReasonCode::Success
    }
}

/// The MQTT 3.1 / 3.1.1 CONNACK return codes (3.1.1 table 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnectReturnCode {
    /// 0: Connection accepted.
    Accepted = 0,
    /// 1: Connection refused, unacceptable protocol version.
    UnacceptableProtocolVersion = 1,
    /// 2: Connection refused, identifier rejected.
    IdentifierRejected = 2,
    /// 3: Connection refused, server unavailable.
    ServerUnavailable = 3,
    /// 4: Connection refused, bad user name or password.
    BadUserNameOrPassword = 4,
    /// 5: Connection refused, not authorized.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// The return code with this byte value (0-5).
    pub fn from_u8(code: u8) -> Option<ConnectReturnCode> {
        use ConnectReturnCode::*;
        Some(match code {
            0 => Accepted,
            1 => UnacceptableProtocolVersion,
            2 => IdentifierRejected,
            3 => ServerUnavailable,
            4 => BadUserNameOrPassword,
            5 => NotAuthorized,
            _ => return None,
        })
    }

    /// The byte on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ReasonCode> for ConnectReturnCode {
    /// The 3.1.1 return code closest to a 5.0 CONNACK reason code: each 3.1.1 code maps from
    /// its 5.0 twin, refusals that are about who the client is (Banned, Bad authentication
    /// method) become "not authorized", and every other failure "server unavailable", the only
    /// generic refusal 3.1.1 has.
    fn from(code: ReasonCode) -> ConnectReturnCode {
        match code {
            ReasonCode::Success => ConnectReturnCode::Accepted,
            ReasonCode::UnsupportedProtocolVersion => {
                ConnectReturnCode::UnacceptableProtocolVersion
            }
            ReasonCode::ClientIdentifierNotValid => ConnectReturnCode::IdentifierRejected,
            ReasonCode::BadUserNameOrPassword => ConnectReturnCode::BadUserNameOrPassword,
            ReasonCode::NotAuthorized
            | ReasonCode::Banned
            | ReasonCode::BadAuthenticationMethod => ConnectReturnCode::NotAuthorized,
            _ => ConnectReturnCode::ServerUnavailable,
        }
    }
}

impl From<ConnectReturnCode> for ReasonCode {
    /// The 5.0 reason code a 3.1.1 return code stands for.
    fn from(code: ConnectReturnCode) -> ReasonCode {
        match code {
            ConnectReturnCode::Accepted => ReasonCode::Success,
            ConnectReturnCode::UnacceptableProtocolVersion => {
                ReasonCode::UnsupportedProtocolVersion
            }
            ConnectReturnCode::IdentifierRejected => ReasonCode::ClientIdentifierNotValid,
            ConnectReturnCode::ServerUnavailable => ReasonCode::ServerUnavailable,
            ConnectReturnCode::BadUserNameOrPassword => ReasonCode::BadUserNameOrPassword,
            ConnectReturnCode::NotAuthorized => ReasonCode::NotAuthorized,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_byte_round_trips_and_others_are_unknown() {
        let mut defined = 0;
        for b in 0..=255u8 {
            if let Some(code) = ReasonCode::from_u8(b) {
                assert_eq!(code.code(), b);
                defined += 1;
            }
        }
        // Table 2-6 lists 43 distinct byte values.
        assert_eq!(defined, 43);
        assert_eq!(ReasonCode::from_u8(0x03), None);
        assert_eq!(ReasonCode::from_u8(0xa3), None);
    }

    #[test]
    fn aliases_of_zero() {
        assert_eq!(ReasonCode::NORMAL_DISCONNECTION.code(), 0);
        assert_eq!(
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::granted(QoS::AtMostOnce)
        );
        assert!(matches!(
            ReasonCode::Success,
            ReasonCode::NORMAL_DISCONNECTION
        ));
    }

    #[test]
    fn per_packet_tables() {
        assert!(ReasonCode::NoMatchingSubscribers.allowed_in(PacketType::PubAck));
        assert!(!ReasonCode::NoMatchingSubscribers.allowed_in(PacketType::PubRel));
        assert!(ReasonCode::PacketIdentifierNotFound.allowed_in(PacketType::PubComp));
        assert!(!ReasonCode::PacketIdentifierNotFound.allowed_in(PacketType::PubAck));
        assert!(ReasonCode::GrantedQoS2.allowed_in(PacketType::SubAck));
        assert!(!ReasonCode::GrantedQoS2.allowed_in(PacketType::UnsubAck));
        assert!(ReasonCode::KeepAliveTimeout.allowed_in(PacketType::Disconnect));
        assert!(!ReasonCode::KeepAliveTimeout.allowed_in(PacketType::ConnAck));
        assert!(ReasonCode::Banned.allowed_in(PacketType::ConnAck));
        assert!(!ReasonCode::Banned.allowed_in(PacketType::Disconnect));
        assert!(ReasonCode::ReAuthenticate.allowed_in(PacketType::Auth));
        assert!(!ReasonCode::Success.allowed_in(PacketType::Publish));
    }

    #[test]
    fn connack_codes_map_down_to_3_1_1() {
        use ConnectReturnCode as R;
        for (five, three) in [
            (ReasonCode::Success, R::Accepted),
            (
                ReasonCode::UnsupportedProtocolVersion,
                R::UnacceptableProtocolVersion,
            ),
            (ReasonCode::ClientIdentifierNotValid, R::IdentifierRejected),
            (ReasonCode::ServerUnavailable, R::ServerUnavailable),
            (ReasonCode::BadUserNameOrPassword, R::BadUserNameOrPassword),
            (ReasonCode::NotAuthorized, R::NotAuthorized),
        ] {
            assert_eq!(R::from(five), three);
            assert_eq!(ReasonCode::from(three), five);
        }
        assert_eq!(R::from(ReasonCode::Banned), R::NotAuthorized);
        assert_eq!(R::from(ReasonCode::ServerBusy), R::ServerUnavailable);
        assert_eq!(R::from(ReasonCode::QuotaExceeded), R::ServerUnavailable);
        assert_eq!(R::from_u8(6), None);
    }
}

//! The on-disk record framing shared by segment files and acks files.
//!
//! ```text
//! frame   = len:u32 crc:u32 payload          (little endian)
//! payload = seq:u64 kind:u8 body             (len = payload length, crc = CRC-32 of payload)
//! body    = message bytes                    kind 1, Message, in NNN.seg files
//!         | offset:u64                       kind 2, Ack, in NNN.acks files
//!         | offset:u64                       kind 3, Delivered, in NNN.acks files
//!         | tag:u8 message bytes             kind 4, TaggedMessage, in NNN.seg files
//! ```
//!
//! A tagged message carries one byte the caller chose ([`QueueLog::append_tagged`]), which the
//! index keeps beside the message's location, so that a restart learns it without reading the
//! record (a priority queue keeps its messages' priority level there).
//!
//! [`QueueLog::append_tagged`]: crate::QueueLog::append_tagged
//!
//! The checksum is the IEEE CRC-32 (`crc32fast`) of the payload. An event names the message
//! record it is about by its seq *and* its offset in the segment, so it can never be applied to
//! another record that happens to carry the same seq.

/// Bytes before the payload: `len` and `crc`.
pub(crate) const HEADER_LEN: usize = 8;
/// Bytes of the payload before the body: `seq` and `kind`.
pub(crate) const PREFIX_LEN: usize = 9;
/// Length of a whole event frame (header, prefix, offset).
pub(crate) const EVENT_FRAME_LEN: usize = HEADER_LEN + PREFIX_LEN + 8;

/// The largest message body a record can hold: the payload length must fit the `u32` header.
pub const MAX_DATA_LEN: usize = u32::MAX as usize - HEADER_LEN - PREFIX_LEN;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Message = 1,
    Ack = 2,
    Delivered = 3,
    TaggedMessage = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Message),
            2 => Some(Kind::Ack),
            3 => Some(Kind::Delivered),
            4 => Some(Kind::TaggedMessage),
            _ => None,
        }
    }
}

/// The frame length of a message record with `data_len` body bytes (and a tag, if `tagged`),
/// or `None` when too large.
pub(crate) fn message_frame_len(data_len: usize, tagged: bool) -> Option<u32> {
    let extra = usize::from(tagged);
    if data_len > MAX_DATA_LEN - extra {
        return None;
    }
    u32::try_from(HEADER_LEN + PREFIX_LEN + extra + data_len).ok()
}

/// Appends a message record to `buf`: a plain one, or a tagged one when `tag` is set.
pub(crate) fn encode_message(buf: &mut Vec<u8>, seq: u64, tag: Option<u8>, data: &[u8]) {
    match tag {
        None => encode(buf, seq, Kind::Message, &[], data),
        Some(tag) => encode(buf, seq, Kind::TaggedMessage, &[tag], data),
    }
}

/// A message record's tag and data, from its kind and body (`None`: not a message record, or
/// a tagged one without its tag).
pub(crate) fn message_parts(kind: Option<Kind>, body: &[u8]) -> Option<(Option<u8>, &[u8])> {
    match kind {
        Some(Kind::Message) => Some((None, body)),
        Some(Kind::TaggedMessage) => {
            let (&tag, data) = body.split_first()?;
            Some((Some(tag), data))
        }
        _ => None,
    }
}

/// Appends an Ack or Delivered event about the message record at `offset` to `buf`.
pub(crate) fn encode_event(buf: &mut Vec<u8>, seq: u64, kind: Kind, offset: u64) {
    debug_assert!(matches!(kind, Kind::Ack | Kind::Delivered));
    encode(buf, seq, kind, &[], &offset.to_le_bytes());
}

/// Appends a frame whose body is `head` then `body`.
fn encode(buf: &mut Vec<u8>, seq: u64, kind: Kind, head: &[u8], body: &[u8]) {
    let start = buf.len();
    // The caller checked the size (message_frame_len); events are tiny.
    let len = (PREFIX_LEN + head.len() + body.len()) as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.push(kind as u8);
    buf.extend_from_slice(head);
    buf.extend_from_slice(body);
    let crc = crc32fast::hash(&buf[start + HEADER_LEN..]);
    buf[start + 4..start + HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// A frame header: the payload length and its checksum.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

impl Header {
    pub(crate) fn parse(bytes: [u8; HEADER_LEN]) -> Header {
        let [a, b, c, d, e, f, g, h] = bytes;
        Header {
            len: u32::from_le_bytes([a, b, c, d]),
            crc: u32::from_le_bytes([e, f, g, h]),
        }
    }
}

/// A payload that passed its checksum.
#[derive(Debug)]
pub(crate) struct Payload<'a> {
    pub(crate) seq: u64,
    /// `None` for a kind this version does not know.
    pub(crate) kind: Option<Kind>,
    pub(crate) body: &'a [u8],
}

/// Why bytes that should hold a record do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The payload does not match its checksum.
    Checksum,
    /// The length field cannot be right (shorter than seq and kind).
    Length,
}

/// Checks `payload` against `header` and splits it.
pub(crate) fn decode_payload(header: Header, payload: &[u8]) -> Result<Payload<'_>, Damage> {
    if (header.len as usize) < PREFIX_LEN || payload.len() != header.len as usize {
        return Err(Damage::Length);
    }
    if crc32fast::hash(payload) != header.crc {
        return Err(Damage::Checksum);
    }
    let (seq, rest) = payload.split_at(8);
    let mut seq_bytes = [0; 8];
    seq_bytes.copy_from_slice(seq);
    Ok(Payload {
        seq: u64::from_le_bytes(seq_bytes),
        kind: Kind::from_byte(rest[0]),
        body: &rest[1..],
    })
}

/// Decodes one whole frame (header and payload), as read back from a [`Location`](crate::Location).
pub(crate) fn decode_frame(frame: &[u8]) -> Result<Payload<'_>, Damage> {
    if frame.len() < HEADER_LEN {
        return Err(Damage::Length);
    }
    let (head, payload) = frame.split_at(HEADER_LEN);
    let mut h = [0; HEADER_LEN];
    h.copy_from_slice(head);
    decode_payload(Header::parse(h), payload)
}

/// The message offset an Ack or Delivered event body names, if well formed.
pub(crate) fn event_offset(body: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = body.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips() {
        let mut buf = Vec::new();
        encode_message(&mut buf, 42, None, b"hello");
        assert_eq!(buf.len() as u32, message_frame_len(5, false).unwrap());
        let p = decode_frame(&buf).unwrap();
        assert_eq!(
            (p.seq, p.kind, p.body),
            (42, Some(Kind::Message), &b"hello"[..])
        );
        assert_eq!(message_parts(p.kind, p.body), Some((None, &b"hello"[..])));
    }

    #[test]
    fn tagged_message_round_trips() {
        let mut buf = Vec::new();
        encode_message(&mut buf, 42, Some(7), b"hello");
        assert_eq!(buf.len() as u32, message_frame_len(5, true).unwrap());
        let p = decode_frame(&buf).unwrap();
        assert_eq!((p.seq, p.kind), (42, Some(Kind::TaggedMessage)));
        assert_eq!(
            message_parts(p.kind, p.body),
            Some((Some(7), &b"hello"[..]))
        );
        assert_eq!(message_parts(p.kind, &[]), None, "no room for the tag");
    }

    #[test]
    fn event_round_trips() {
        let mut buf = Vec::new();
        encode_event(&mut buf, 7, Kind::Ack, 4096);
        assert_eq!(buf.len(), EVENT_FRAME_LEN);
        let p = decode_frame(&buf).unwrap();
        assert_eq!((p.seq, p.kind), (7, Some(Kind::Ack)));
        assert_eq!(event_offset(p.body), Some(4096));
    }

    #[test]
    fn header_is_little_endian() {
        let mut buf = Vec::new();
        encode_message(&mut buf, 1, None, b"ab");
        assert_eq!(&buf[..4], &[11, 0, 0, 0]);
        assert_eq!(&buf[8..16], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(buf[16], 1);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode_message(&mut buf, 3, None, b"payload");
        for i in HEADER_LEN..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                assert_eq!(decode_frame(&bad).unwrap_err(), Damage::Checksum);
            }
        }
    }

    #[test]
    fn short_length_is_damage() {
        let mut buf = Vec::new();
        encode_message(&mut buf, 3, None, b"");
        buf[0] = 3;
        assert_eq!(decode_frame(&buf[..11]).unwrap_err(), Damage::Length);
    }
}

//! Frames: the unit everything travels in after the protocol header.
//!
//! A frame is a 7-byte header (type octet, channel short, payload size long), the payload, and
//! the frame-end octet 0xCE (AMQP 0-9-1 section 4.2.3). Method frames carry a method, content
//! header frames the size and properties of the content that follows, body frames a slice of the
//! body, heartbeat frames nothing.
//!
//! Decoding never buffers more than the negotiated `frame-max`: the declared size is checked as
//! soon as the 7 header bytes are in, before waiting for the payload.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::WireError;
use crate::method::Method;
use crate::types::patch_u32_len;

/// What a client sends first: "AMQP", 0, then version 0-9-1 (section 4.2.2). A server that gets
/// anything else writes this header back and closes the socket.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";
/// The octet that ends every frame; anything else there means the peer lost framing.
pub const FRAME_END: u8 = 0xCE;
/// The smallest `frame-max` a peer may negotiate, and the limit before tuning is done.
pub const FRAME_MIN_SIZE: u32 = 4096;
/// Bytes a frame adds around its payload: the 7-byte header and the frame-end octet.
pub const FRAME_OVERHEAD: usize = 8;
/// Length of the frame header (type, channel, size).
pub const FRAME_HEADER_SIZE: usize = 7;

/// Frame type of a method frame.
pub const FRAME_METHOD: u8 = 1;
/// Frame type of a content header frame.
pub const FRAME_HEADER: u8 = 2;
/// Frame type of a content body frame.
pub const FRAME_BODY: u8 = 3;
/// Frame type of a heartbeat frame.
pub const FRAME_HEARTBEAT: u8 = 8;

/// Most that [`decode_frame`] reserves ahead for a frame it is waiting for: RabbitMQ's default
/// `frame-max`, so a typical frame still arrives into one allocation.
const RESERVE_CAP: usize = 128 * 1024;

/// The fixed part of a content header payload: class id, weight, body size (section 4.2.6.1),
/// followed by at least the 2-byte property flags.
const CONTENT_HEADER_MIN: usize = 2 + 2 + 8 + 2;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A method (section 4.2.4).
    Method {
        /// Channel number; 0 for the connection class.
        channel: u16,
        /// The method and its arguments.
        method: Method,
    },
    /// Content header; `properties` is the raw property-flags + property list, not decoded (the
    /// broker forwards it as is; [`crate::BasicProperties::decode`] reads it when needed).
    Header {
        /// Channel number.
        channel: u16,
        /// Class of the content; must match the method it follows (60 for basic).
        class_id: u16,
        /// Total size of the body frames that follow.
        body_size: u64,
        /// Property flags and property values, raw.
        properties: Bytes,
    },
    /// A slice of content body.
    Body {
        /// Channel number.
        channel: u16,
        /// The bytes.
        payload: Bytes,
    },
    /// A heartbeat. The spec requires channel 0 and a server must answer another channel with
    /// 501 FRAME_ERROR; the decoder passes the channel on so the server can do so.
    Heartbeat {
        /// Channel number (0 when valid).
        channel: u16,
    },
}

impl Frame {
    /// Writes the frame. A `Body` is written as exactly one frame, whatever its size (even
    /// empty); use [`encode_body_frames`] to split a body by `frame-max`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Method { channel, method } => encode_method_frame(*channel, method, out),
            Frame::Header {
                channel,
                class_id,
                body_size,
                properties,
            } => encode_header_frame(*channel, *class_id, *body_size, properties, out),
            Frame::Body { channel, payload } => put_frame(out, FRAME_BODY, *channel, payload),
            Frame::Heartbeat { channel } => put_frame(out, FRAME_HEARTBEAT, *channel, &[]),
        }
    }

    /// The channel the frame belongs to.
    pub fn channel(&self) -> u16 {
        match *self {
            Frame::Method { channel, .. }
            | Frame::Header { channel, .. }
            | Frame::Body { channel, .. }
            | Frame::Heartbeat { channel } => channel,
        }
    }
}

/// Decodes one frame from the front of `buf`, consuming it. `Ok(None)` when more bytes are
/// needed (nothing is consumed then).
///
/// Checks the declared size against `frame_max` (whole frame incl. 8 bytes overhead; 0 = no
/// limit) BEFORE waiting for the payload, so a peer cannot make us buffer more than `frame_max`;
/// once the size is accepted, capacity for the rest of the frame (up to 128 KiB) is reserved so
/// the next read can fill it. Before connection.tune-ok the server should pass
/// [`FRAME_MIN_SIZE`]; 0 is only for trusted peers.
///
/// Payloads and strings are zero-copy slices of the frame (`split_to` + `freeze`). They share
/// the read buffer's allocation: a consumer that keeps a body for long (a queued message) should
/// copy it out so it does not pin the whole buffer.
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, WireError> {
    let Some(header) = buf.first_chunk::<FRAME_HEADER_SIZE>() else {
        return Ok(None);
    };
    let frame_type = header[0];
    let channel = u16::from_be_bytes([header[1], header[2]]);
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    if !matches!(
        frame_type,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(WireError::UnknownFrameType(frame_type));
    }
    let total = u64::from(size) + FRAME_OVERHEAD as u64;
    if frame_max != 0 && total > u64::from(frame_max) {
        return Err(WireError::FrameTooLarge {
            size: total,
            max: frame_max,
        });
    }
    let Ok(total) = usize::try_from(total) else {
        // Only reachable on 16/32-bit targets with frame_max 0.
        return Err(WireError::FrameTooLarge {
            size: total,
            max: frame_max,
        });
    };
    if buf.len() < total {
        // Room for the rest of the frame lets the next read fill it in one go. Capped, so that
        // memory follows the bytes actually received rather than a size merely declared (with
        // frame_max 0, seven bytes could otherwise make us allocate 4 GiB).
        buf.reserve((total - buf.len()).min(RESERVE_CAP));
        return Ok(None);
    }
    let end = buf[total - 1];
    if end != FRAME_END {
        return Err(WireError::BadFrameEnd(end));
    }

    let frame = buf.split_to(total).freeze();
    let payload = frame.slice(FRAME_HEADER_SIZE..total - 1);
    let frame = match frame_type {
        FRAME_METHOD => {
            let Some(ids) = payload.first_chunk::<4>() else {
                return Err(WireError::MalformedFrame(
                    "method frame shorter than 4 bytes",
                ));
            };
            let class_id = u16::from_be_bytes([ids[0], ids[1]]);
            let method_id = u16::from_be_bytes([ids[2], ids[3]]);
            let method = Method::decode(class_id, method_id, payload.slice(4..))?;
            Frame::Method { channel, method }
        }
        FRAME_HEADER => {
            let Some(fixed) = payload.first_chunk::<12>() else {
                return Err(WireError::MalformedFrame("content header too short"));
            };
            if payload.len() < CONTENT_HEADER_MIN {
                return Err(WireError::MalformedFrame("content header too short"));
            }
            let class_id = u16::from_be_bytes([fixed[0], fixed[1]]);
            // fixed[2..4] is the weight: "unused and must be zero" (section 4.2.6.1). It is
            // ignored rather than checked, as nothing depends on it.
            let mut size = [0u8; 8];
            size.copy_from_slice(&fixed[4..12]);
            Frame::Header {
                channel,
                class_id,
                body_size: u64::from_be_bytes(size),
                properties: payload.slice(12..),
            }
        }
        FRAME_BODY => Frame::Body { channel, payload },
        _ => {
            if !payload.is_empty() {
                return Err(WireError::MalformedFrame("heartbeat with a payload"));
            }
            Frame::Heartbeat { channel }
        }
    };
    Ok(Some(frame))
}

/// Writes a frame header, `payload` and the frame-end octet.
fn put_frame(out: &mut BytesMut, frame_type: u8, channel: u16, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.reserve(payload.len() + FRAME_OVERHEAD);
    out.put_u8(frame_type);
    out.put_u16(channel);
    out.put_u32(len);
    out.put_slice(payload.get(..len as usize).unwrap_or(payload));
    out.put_u8(FRAME_END);
}

/// Writes `method` as a method frame on `channel`.
pub fn encode_method_frame(channel: u16, method: &Method, out: &mut BytesMut) {
    out.reserve(method.encoded_len() + FRAME_OVERHEAD);
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    let at = out.len();
    out.put_u32(0);
    method.write(out);
    patch_u32_len(out, at);
    out.put_u8(FRAME_END);
}

/// Writes a content header frame: class id, weight 0, body size, then `properties` as encoded by
/// [`crate::BasicProperties::encode`] (or as received).
pub fn encode_header_frame(
    channel: u16,
    class_id: u16,
    body_size: u64,
    properties: &[u8],
    out: &mut BytesMut,
) {
    let size = 12 + properties.len();
    out.reserve(size + FRAME_OVERHEAD);
    out.put_u8(FRAME_HEADER);
    out.put_u16(channel);
    out.put_u32(u32::try_from(size).unwrap_or(u32::MAX));
    out.put_u16(class_id);
    out.put_u16(0);
    out.put_u64(body_size);
    out.put_slice(properties);
    out.put_u8(FRAME_END);
}

/// Splits body into body frames of at most `frame_max - 8` payload bytes (`frame_max` 0 = one
/// frame); an empty body writes nothing, as the spec sends no body frame for empty content.
pub fn encode_body_frames(channel: u16, body: &[u8], frame_max: u32, out: &mut BytesMut) {
    if body.is_empty() {
        return;
    }
    let limit = if frame_max == 0 {
        u32::MAX as usize
    } else {
        // A frame_max below the overhead is a caller bug; one byte per frame still terminates.
        (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1)
    };
    let frames = body.len().div_ceil(limit);
    out.reserve(body.len() + frames * FRAME_OVERHEAD);
    for chunk in body.chunks(limit) {
        put_frame(out, FRAME_BODY, channel, chunk);
    }
}

/// Writes a heartbeat frame (always channel 0).
pub fn encode_heartbeat(out: &mut BytesMut) {
    put_frame(out, FRAME_HEARTBEAT, 0, &[]);
}

#[cfg(test)]
mod tests;

//! A `Publish` frame's messages borrowed from the frame: what a broker stores, read with no
//! copy and no reference count per message (a [`PublishedMessage`](super::PublishedMessage)
//! holds its entry as `Bytes`, whose clone and drop are atomic operations: at millions of
//! small messages a second they were a third of a broker's publishing cost).
//!
//! [`Publish`](super::Publish)'s decoding checks every message with this walk, so iterating a
//! decoded frame's [`PublishedRefs`] cannot fail.

use crate::error::WireError;
use crate::types::Str;

/// One message of a `Publish`, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedRef<'a> {
    /// The publisher's sequence number for it.
    pub publishing_id: u64,
    /// Version 2 only: the value consumers can filter on (checked UTF-8); `None` is null.
    pub filter_value: Option<&'a [u8]>,
    /// The message: one AMQP 1.0 message, or a sub-batch of them.
    pub entry: EntryRef<'a>,
}

/// A data entry (osiris "Data Entry format"), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryRef<'a> {
    /// One record.
    Simple(&'a [u8]),
    /// A batch of records, as the client encoded (and maybe compressed) it.
    SubBatch {
        /// Compression type, 3 bits (0 none, 1 gzip, ...).
        compression: u8,
        /// Records in the batch.
        records: u16,
        /// Length of `body` once uncompressed.
        uncompressed_len: u32,
        /// The batch's bytes.
        body: &'a [u8],
    },
}

impl EntryRef<'_> {
    /// Records this entry counts for.
    pub fn records(&self) -> u32 {
        match self {
            EntryRef::Simple(_) => 1,
            EntryRef::SubBatch { records, .. } => u32::from(*records),
        }
    }
}

/// The messages of a `Publish`, borrowed, in order.
#[derive(Debug, Clone)]
pub struct PublishedRefs<'a> {
    rest: &'a [u8],
    filtered: bool,
}

impl<'a> PublishedRefs<'a> {
    /// The messages encoded in `messages` (version 2, with filter values, if `filtered`).
    pub(crate) fn new(messages: &'a [u8], filtered: bool) -> Self {
        PublishedRefs {
            rest: messages,
            filtered,
        }
    }

    /// Steps over the next message, checking it as [`PublishedRefs::try_next`] does; false
    /// at the end. The frame's decoding checks every message with this.
    pub(crate) fn skip_next(&mut self) -> Result<bool, WireError> {
        if !self.filtered {
            // Publishing id, then the entry: a simple one's 31-bit length, or a sub-batch's
            // header whose last 4 octets are its length.
            let Some(head) = self.rest.get(8..12) else {
                return if self.rest.is_empty() {
                    Ok(false)
                } else {
                    Err(WireError::Truncated)
                };
            };
            let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let (header, len) = if first & 0x8000_0000 == 0 {
                (12, first as usize)
            } else {
                let len = self.rest.get(15..19).ok_or(WireError::Truncated)?;
                (
                    19,
                    u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize,
                )
            };
            let end = header + len;
            if end > self.rest.len() {
                return Err(WireError::Truncated);
            }
            self.rest = &self.rest[end..];
            return Ok(true);
        }
        self.try_next().map(|m| m.is_some())
    }

    /// The next message, or the error that makes the rest unreadable.
    #[inline]
    pub(crate) fn try_next(&mut self) -> Result<Option<PublishedRef<'a>>, WireError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        if !self.filtered {
            // The common case first: version 1, a simple entry.
            if let Some(head) = self.rest.get(..12) {
                let first = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
                if first & 0x8000_0000 == 0 {
                    let end = 12 + first as usize;
                    if let Some(body) = self.rest.get(12..end) {
                        let mut id = [0u8; 8];
                        id.copy_from_slice(&head[..8]);
                        self.rest = &self.rest[end..];
                        return Ok(Some(PublishedRef {
                            publishing_id: u64::from_be_bytes(id),
                            filter_value: None,
                            entry: EntryRef::Simple(body),
                        }));
                    }
                }
            }
        }
        let publishing_id = u64::from_be_bytes(take_array(&mut self.rest)?);
        let filter_value = if self.filtered {
            let len = i16::from_be_bytes(take_array(&mut self.rest)?);
            if len == -1 {
                None
            } else {
                let len =
                    usize::try_from(len).map_err(|_| WireError::NegativeLength(len.into()))?;
                let value = take(&mut self.rest, len)?;
                if value.len() > Str::MAX_LEN {
                    return Err(WireError::StringTooLong);
                }
                std::str::from_utf8(value).map_err(|_| WireError::InvalidUtf8)?;
                Some(value)
            }
        } else {
            None
        };
        let first = u32::from_be_bytes(take_array(&mut self.rest)?);
        let entry = if first & 0x8000_0000 == 0 {
            let len = usize::try_from(first).map_err(|_| WireError::Truncated)?;
            EntryRef::Simple(take(&mut self.rest, len)?)
        } else {
            // 1 | compression:3 | reserved:4 | records:16 | uncompressed length:32 |
            // length:32; the first u32 holds the flags, the record count and the first octet
            // of the uncompressed length (as `Entry::decode`).
            let flags = (first >> 24) as u8;
            let records = (first >> 8) as u16;
            let rest: [u8; 3] = take_array(&mut self.rest)?;
            let uncompressed_len = u32::from_be_bytes([first as u8, rest[0], rest[1], rest[2]]);
            let len = u32::from_be_bytes(take_array(&mut self.rest)?);
            let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
            EntryRef::SubBatch {
                compression: (flags >> 4) & 0x07,
                records,
                uncompressed_len,
                body: take(&mut self.rest, len)?,
            }
        };
        Ok(Some(PublishedRef {
            publishing_id,
            filter_value,
            entry,
        }))
    }
}

impl<'a> Iterator for PublishedRefs<'a> {
    type Item = PublishedRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<PublishedRef<'a>> {
        self.try_next().ok().flatten()
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if n > rest.len() {
        return Err(WireError::Truncated);
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_array<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], WireError> {
    let head = take(rest, N)?;
    let mut a = [0u8; N];
    a.copy_from_slice(head);
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{Entry, SubBatch};
    use crate::command::{Command, Publish, PublishedMessage};
    use crate::frame::decode_frame;
    use bytes::{Bytes, BytesMut};

    #[test]
    fn borrowed_publish_messages_match_the_owned_ones() {
        let published = vec![
            PublishedMessage::simple(3, Bytes::from_static(b"one")),
            PublishedMessage {
                publishing_id: 4,
                filter_value: Some(Str::new("eu").unwrap()),
                entry: Entry::SubBatch(SubBatch {
                    compression: 1,
                    records: 3,
                    uncompressed_len: 30,
                    body: Bytes::from_static(b"gz"),
                }),
            },
            PublishedMessage::simple(9, Bytes::new()),
        ];
        for filtered in [false, true] {
            let p = Publish::with_version(2, filtered, &published);
            let owned: Vec<PublishedMessage> = p.messages().collect();
            let borrowed: Vec<PublishedRef<'_>> = p.message_refs().collect();
            assert_eq!(owned.len(), borrowed.len());
            for (o, b) in owned.iter().zip(&borrowed) {
                assert_eq!(o.publishing_id, b.publishing_id);
                assert_eq!(o.filter_value.as_ref().map(Str::as_bytes), b.filter_value);
                assert_eq!(o.entry.records(), b.entry.records());
                match (&o.entry, b.entry) {
                    (Entry::Simple(x), EntryRef::Simple(y)) => assert_eq!(&x[..], y),
                    (
                        Entry::SubBatch(x),
                        EntryRef::SubBatch {
                            compression,
                            records,
                            uncompressed_len,
                            body,
                        },
                    ) => assert_eq!(
                        (x.compression, x.records, x.uncompressed_len, &x.body[..]),
                        (compression, records, uncompressed_len, body)
                    ),
                    _ => panic!("entry kinds differ"),
                }
            }
        }
        // A frame cut inside its last message is refused by decoding, as before.
        let bytes = Command::from(Publish::new(1, &published)).to_bytes();
        let mut cut = BytesMut::from(&bytes[..bytes.len() - 1]);
        let size = u32::try_from(cut.len() - 4).unwrap();
        cut[..4].copy_from_slice(&size.to_be_bytes());
        let frame = decode_frame(&mut cut, 0).unwrap().unwrap();
        assert!(Command::decode(frame).is_err());
    }
}

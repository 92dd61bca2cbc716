//! What the bench puts in a stream and how it gets its bodies back out of a delivered chunk.
//!
//! A message in a stream is an AMQP 1.0 message (PROTOCOL.adoc, "Publish": the broker stores
//! it as given; RabbitMQ and Pigeon parse it only to convert it for AMQP 0-9-1 consumers). The
//! bench sends the least that is a valid one: a single `data` section (AMQP 1.0 part 3, 3.2.6:
//! descriptor `0x00 0x53 0x75`, then a `vbin8` or `vbin32` binary) holding the body, so a
//! 16-byte body takes 21 bytes in the stream, as a PerfTest message would.
//!
//! A chunk's data is a run of entries (osiris `simple entry` or `sub-batch`); a sub-batch
//! without compression holds simple entries itself ([`stream_wire::Entry`]). [`ChunkMessages`]
//! walks both, zero-copy, and numbers each message with its offset so a consumer can skip what
//! precedes the offset it asked for.

use bytes::{BufMut, Bytes, BytesMut};
use stream_wire::{compression, Chunk, Entry};

/// The AMQP 1.0 `data` section descriptor (`0x00`, smallulong `0x53`, code `0x75`).
const DATA_DESCRIPTOR: [u8; 3] = [0x00, 0x53, 0x75];
/// AMQP 1.0 `vbin8` and `vbin32` constructors.
const VBIN8: u8 = 0xa0;
const VBIN32: u8 = 0xb0;

/// Bytes an AMQP 1.0 message with one data section of `body_len` bytes takes.
pub fn encoded_len(body_len: usize) -> usize {
    DATA_DESCRIPTOR.len() + if body_len <= 255 { 2 } else { 5 } + body_len
}

/// Appends `body` as an AMQP 1.0 message of one data section.
pub fn encode(body: &[u8], out: &mut BytesMut) {
    out.put_slice(&DATA_DESCRIPTOR);
    match u8::try_from(body.len()) {
        Ok(len) => {
            out.put_u8(VBIN8);
            out.put_u8(len);
        }
        Err(_) => {
            out.put_u8(VBIN32);
            out.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
        }
    }
    out.put_slice(body);
}

/// The body of a message `encode` wrote; anything else (another client's message with header
/// or properties sections) comes back whole, and the tally then finds no bench stamp in it.
pub fn body(message: Bytes) -> Bytes {
    let Some(rest) = message.strip_prefix(&DATA_DESCRIPTOR[..]) else {
        return message;
    };
    let (start, len) = match rest.split_first() {
        Some((&VBIN8, [len, ..])) => (5, usize::from(*len)),
        Some((&VBIN32, [a, b, c, d, ..])) => (8, u32::from_be_bytes([*a, *b, *c, *d]) as usize),
        _ => return message,
    };
    if message.len() == start + len {
        message.slice(start..)
    } else {
        message
    }
}

/// The messages of one delivered chunk, each with its offset.
#[derive(Debug)]
pub struct ChunkMessages {
    entries: stream_wire::Entries,
    /// Records of the sub-batch being walked, if any.
    inner: Option<stream_wire::Entries>,
    /// The offset of the next message.
    offset: u64,
}

/// A chunk's data could not be walked: a sub-batch is compressed (the bench sends none) or an
/// entry is cut short.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable(pub String);

impl ChunkMessages {
    /// The messages of `chunk`, the first at the chunk's id.
    pub fn new(chunk: &Chunk) -> Self {
        ChunkMessages {
            entries: chunk.entries(),
            inner: None,
            offset: chunk.header.chunk_id,
        }
    }
}

impl Iterator for ChunkMessages {
    /// (offset, the message as stored).
    type Item = Result<(u64, Bytes), Unreadable>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(inner) = &mut self.inner {
                match inner.next() {
                    Some(Ok(Entry::Simple(m))) => {
                        self.offset += 1;
                        return Some(Ok((self.offset - 1, m)));
                    }
                    Some(Ok(Entry::SubBatch(_))) => {
                        return Some(Err(Unreadable("a sub-batch inside a sub-batch".into())))
                    }
                    Some(Err(e)) => return Some(Err(Unreadable(format!("sub-batch: {e}")))),
                    None => self.inner = None,
                }
            }
            match self.entries.next()? {
                Ok(Entry::Simple(m)) => {
                    self.offset += 1;
                    return Some(Ok((self.offset - 1, m)));
                }
                Ok(Entry::SubBatch(b)) if b.compression == compression::NONE => {
                    self.inner = Some(stream_wire::Entries::new(b.body));
                }
                Ok(Entry::SubBatch(b)) => {
                    return Some(Err(Unreadable(format!(
                        "a sub-batch compressed with type {}, which the bench cannot read",
                        b.compression
                    ))))
                }
                Err(e) => return Some(Err(Unreadable(format!("chunk data: {e}")))),
            }
        }
    }
}

/// The body of a message `encode` wrote, borrowed: as [`body`], without a `Bytes` per message.
pub fn body_of(message: &[u8]) -> &[u8] {
    let Some(rest) = message.strip_prefix(&DATA_DESCRIPTOR[..]) else {
        return message;
    };
    let (start, len) = match rest.split_first() {
        Some((&VBIN8, [len, ..])) => (5, usize::from(*len)),
        Some((&VBIN32, [a, b, c, d, ..])) => (8, u32::from_be_bytes([*a, *b, *c, *d]) as usize),
        _ => return message,
    };
    if message.len() == start + len {
        &message[start..]
    } else {
        message
    }
}

/// Calls `f` with the offset and bytes of every message in a chunk's `data`, the first at
/// offset `first`: the walk of [`ChunkMessages`] over borrowed bytes (no reference count
/// touched per message), for the consumer's hot path. Returns how many messages it found.
pub fn walk(data: &[u8], first: u64, mut f: impl FnMut(u64, &[u8])) -> Result<u64, Unreadable> {
    let mut offset = first;
    walk_entries(data, true, &mut |m| {
        f(offset, m);
        offset += 1;
    })?;
    Ok(offset - first)
}

/// Walks simple entries, and (when `outer`) uncompressed sub-batches of simple entries.
fn walk_entries(mut data: &[u8], outer: bool, f: &mut impl FnMut(&[u8])) -> Result<(), Unreadable> {
    let cut = || Unreadable("chunk data: an entry is cut short".into());
    while let Some(&first) = data.first() {
        if first & 0x80 == 0 {
            let head: [u8; 4] = data
                .get(..4)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(cut)?;
            let len = u32::from_be_bytes(head) as usize;
            let m = data.get(4..4 + len).ok_or_else(cut)?;
            f(m);
            data = &data[4 + len..];
            continue;
        }
        if !outer {
            return Err(Unreadable("a sub-batch inside a sub-batch".into()));
        }
        // 1 | compression:3 | reserved:4, records u16, uncompressed u32, length u32.
        let head = data.get(..11).ok_or_else(cut)?;
        let compression = (first >> 4) & 0x07;
        if compression != compression::NONE {
            return Err(Unreadable(format!(
                "a sub-batch compressed with type {compression}, which the bench cannot read"
            )));
        }
        let len = u32::from_be_bytes([head[7], head[8], head[9], head[10]]) as usize;
        let body = data.get(11..11 + len).ok_or_else(cut)?;
        walk_entries(body, false, f)?;
        data = &data[11 + len..];
    }
    Ok(())
}

/// Appends a sub-batch entry of the messages in `records` (each already a simple entry: size
/// and message), `count` of them, uncompressed.
pub fn encode_sub_batch(records: &[u8], count: u16, out: &mut BytesMut) {
    let len = u32::try_from(records.len()).unwrap_or(u32::MAX);
    // osiris sub-batch: 1 bit set, 3 bits compression type, 4 reserved (one byte), then the
    // record count, uncompressed and compressed lengths (equal without compression).
    out.put_u8(0x80 | (compression::NONE << 4));
    out.put_u16(count);
    out.put_u32(len);
    out.put_u32(len);
    out.put_slice(records);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(body: &[u8]) -> Bytes {
        let mut m = BytesMut::new();
        encode(body, &mut m);
        m.freeze()
    }

    #[test]
    fn data_section_round_trips_both_sizes() {
        for len in [16, 255, 256, 4000] {
            let b: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let m = simple(&b);
            assert_eq!(m.len(), encoded_len(len));
            assert_eq!(&body(m.clone())[..], &b[..]);
            assert_eq!(body_of(&m), &b[..]);
        }
        assert_eq!(&simple(&[1; 16])[..5], &[0x00, 0x53, 0x75, 0xa0, 16]);
    }

    #[test]
    fn foreign_messages_come_back_whole() {
        let other = Bytes::from_static(&[0x00, 0x53, 0x70, 0x45]);
        assert_eq!(body(other.clone()), other);
        let lying = Bytes::from_static(&[0x00, 0x53, 0x75, 0xa0, 9, 1]);
        assert_eq!(body(lying.clone()), lying);
    }

    fn entry_bytes(messages: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        for m in messages {
            Entry::Simple(simple(m)).encode(&mut out);
        }
        out
    }

    #[test]
    fn chunk_walk_numbers_simple_entries_and_opens_sub_batches() {
        let mut records = BytesMut::new();
        for m in [&b"b"[..], b"c"] {
            Entry::Simple(simple(m)).encode(&mut records);
        }
        let mut sub = BytesMut::new();
        encode_sub_batch(&records, 2, &mut sub);
        let mut c = stream_wire::Entries::new(sub.clone().freeze());
        let Some(Ok(Entry::SubBatch(decoded))) = c.next() else {
            panic!("not a sub-batch");
        };
        assert_eq!((decoded.records, decoded.compression), (2, 0));
        let entries = vec![
            Entry::Simple(simple(b"a")),
            Entry::SubBatch(decoded),
            Entry::Simple(simple(b"d")),
        ];
        let chunk = Chunk::from_entries(0, 1, 100, &entries);
        assert_eq!(chunk.header.num_records, 4);
        let got: Vec<(u64, Bytes)> = ChunkMessages::new(&chunk).map(Result::unwrap).collect();
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, vec![100, 101, 102, 103]);
        let bodies: Vec<Bytes> = got.into_iter().map(|(_, m)| body(m)).collect();
        assert_eq!(bodies, vec!["a", "b", "c", "d"]);
        // The borrowed walk finds the same.
        let mut seen = Vec::new();
        let n = walk(&chunk.data, 100, |o, m| seen.push((o, body_of(m).to_vec()))).unwrap();
        assert_eq!(n, 4);
        let want: Vec<(u64, Vec<u8>)> = ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, b)| (100 + i as u64, b.as_bytes().to_vec()))
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn compressed_sub_batches_are_reported_not_misread() {
        let entries = vec![Entry::SubBatch(stream_wire::SubBatch {
            compression: compression::GZIP,
            records: 3,
            uncompressed_len: 10,
            body: Bytes::from_static(b"xyz"),
        })];
        let chunk = Chunk::from_entries(0, 1, 0, &entries);
        let first = ChunkMessages::new(&chunk).next().unwrap();
        assert!(first.unwrap_err().0.contains("compressed"));
        assert!(walk(&chunk.data, 0, |_, _| {})
            .unwrap_err()
            .0
            .contains("compressed"));
    }

    #[test]
    fn a_cut_entry_ends_the_walk_with_an_error() {
        let mut data = entry_bytes(&[b"ok"]);
        data.extend_from_slice(&[0, 0, 0, 50, 1, 2]);
        let mut chunk = Chunk::from_entries(0, 1, 7, &[Entry::Simple(simple(b"ok"))]);
        chunk.data = data.freeze();
        let mut walk = ChunkMessages::new(&chunk);
        assert_eq!(walk.next().unwrap().unwrap().0, 7);
        assert!(walk.next().unwrap().is_err());
        assert!(walk.next().is_none());
        let mut found = 0;
        assert!(super::walk(&chunk.data, 7, |_, _| found += 1).is_err());
        assert_eq!(found, 1);
    }
}

//! Read buffers that exist only while there is something to read, and grow only for
//! connections that need it.
//!
//! A connection waits for its socket to be readable with no buffer at all ([`ReadBuf::release`]
//! once everything read was decoded), so an idle connection holds none; the buffer is allocated
//! just before a read. One whose reads keep filling the buffer gets it doubled (up to 256 KiB),
//! so a busy publisher needs few syscalls, and keeps it between reads; reads that use little of
//! it halve the read size again, down to where the buffer is freed between reads.

use bytes::BytesMut;

const MIN: u32 = 512;
const MAX: u32 = 256 * 1024;

/// A read buffer with an adaptive read size.
pub struct ReadBuf {
    /// The bytes read and not yet decoded.
    pub buf: BytesMut,
    // u32: a smaller connection task (at most 256 KiB anyway).
    read_size: u32,
    last_spare: u32,
}

impl ReadBuf {
    /// An empty buffer.
    pub fn new() -> ReadBuf {
        ReadBuf {
            buf: BytesMut::new(),
            read_size: MIN,
            last_spare: 0,
        }
    }

    /// Makes room for the next read.
    pub fn prepare(&mut self) {
        let wanted = self.read_size as usize;
        if self.buf.capacity() - self.buf.len() < wanted {
            self.buf.reserve(wanted);
        }
        self.last_spare = u32::try_from(self.buf.capacity() - self.buf.len()).unwrap_or(u32::MAX);
    }

    /// Records that a read returned `n` bytes: a full buffer asks for a larger one next time,
    /// one filled to less than a quarter for a smaller one.
    pub fn filled(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        if n >= self.last_spare {
            self.read_size = (self.read_size * 2).min(MAX);
        } else if n < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(MIN);
        }
    }

    /// Frees the buffer if everything read was decoded and reads are small: the connection
    /// then waits for its next packet holding no memory for it. A busy connection (larger
    /// reads) keeps its buffer, so it does not allocate for every read.
    pub fn release(&mut self) {
        if self.buf.is_empty() && self.read_size == MIN && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }
}

impl Default for ReadBuf {
    fn default() -> Self {
        ReadBuf::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_holds_no_buffer() {
        let mut rb = ReadBuf::new();
        rb.prepare();
        rb.buf.extend_from_slice(&[0x10, 0x0c]);
        rb.filled(2);
        let _ = rb.buf.split_to(2);
        rb.release();
        assert_eq!(rb.buf.capacity(), 0);
    }

    #[test]
    fn a_busy_connection_keeps_a_larger_buffer_until_its_reads_shrink() {
        let mut rb = ReadBuf::new();
        for _ in 0..3 {
            rb.prepare();
            let spare = rb.buf.capacity() - rb.buf.len();
            rb.buf.resize(rb.buf.len() + spare, 0);
            rb.filled(spare);
            rb.buf.clear();
        }
        assert!(rb.read_size > MIN);
        rb.release();
        assert!(rb.buf.capacity() > 0);
        while rb.read_size > MIN {
            rb.prepare();
            rb.filled(1);
        }
        rb.release();
        assert_eq!(rb.buf.capacity(), 0);
    }
}

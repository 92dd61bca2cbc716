//! Read buffers that start small and grow only for connections that need it.
//!
//! An idle connection keeps a few hundred bytes; one whose reads keep filling the buffer gets
//! it doubled (up to 256 KiB), so a busy publisher needs few syscalls.

use bytes::BytesMut;

const MIN: usize = 512;
const MAX: usize = 256 * 1024;

/// A read buffer with an adaptive read size.
pub struct ReadBuf {
    /// The bytes read and not yet decoded.
    pub buf: BytesMut,
    read_size: usize,
    last_spare: usize,
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
        if self.buf.capacity() - self.buf.len() < self.read_size {
            self.buf.reserve(self.read_size);
        }
        self.last_spare = self.buf.capacity() - self.buf.len();
    }

    /// Records that a read returned `n` bytes: a full buffer asks for a larger one next time.
    pub fn filled(&mut self, n: usize) {
        if n >= self.last_spare {
            self.read_size = (self.read_size * 2).min(MAX);
        }
    }
}

impl Default for ReadBuf {
    fn default() -> Self {
        ReadBuf::new()
    }
}

//! The codecs messages were encoded with, by one-byte index.
//!
//! A `&'static dyn PropertiesCodec` takes 16 bytes, and every message names its codec: the
//! packed header keeps a one-byte index into this process-wide table instead. Codecs are
//! statics, a handful per program (the AMQP one in production; tests add their own), so the
//! table never fills; registering takes a lock-free scan of the few entries in use.

use super::{OpaqueProperties, PropertiesCodec};
use std::sync::OnceLock;

/// How many distinct codecs a process can use; index 255 stands for "the table was full".
const SLOTS: usize = 255;

static CODECS: [OnceLock<&'static dyn PropertiesCodec>; SLOTS] = [const { OnceLock::new() }; SLOTS];

/// The same codec: the same value with the same implementation. Comparing the vtables too is
/// the point (two zero-sized codecs of different types may share an address); a vtable
/// duplicated by codegen only costs a second slot.
#[allow(ambiguous_wide_pointer_comparisons)]
fn same(a: &'static dyn PropertiesCodec, b: &'static dyn PropertiesCodec) -> bool {
    std::ptr::eq(a, b)
}

/// The index of `codec`, registered on first use.
pub(super) fn index(codec: &'static dyn PropertiesCodec) -> u8 {
    for (i, slot) in CODECS.iter().enumerate() {
        // Claims the first free slot; a racing registration of another codec may win it, and
        // then this one goes on to the next.
        let c = *slot.get_or_init(|| codec);
        if same(c, codec) {
            return u8::try_from(i).unwrap_or(u8::MAX);
        }
    }
    // Unreachable with a handful of static codecs; reading such messages as opaque beats
    // refusing them.
    tracing::error!("more than {SLOTS} message property codecs: reading properties as opaque");
    u8::MAX
}

/// The codec registered at `i`.
pub(super) fn get(i: u8) -> &'static dyn PropertiesCodec {
    static OPAQUE: OpaqueProperties = OpaqueProperties;
    match CODECS.get(usize::from(i)).and_then(OnceLock::get) {
        Some(c) => *c,
        None => &OPAQUE,
    }
}

//! The flags of a `pigeon bench stream` run as its report echoes them.

use serde::Serialize;

/// The flags of a stream run.
#[derive(Debug, Serialize)]
pub struct StreamSettings {
    /// The stream published to and read.
    pub stream: String,
    /// Publishers.
    pub producers: u32,
    /// Consumers (each reads every message).
    pub consumers: u32,
    /// Body size in bytes (inside an AMQP 1.0 data section).
    pub size: u32,
    /// Seconds of publishing.
    pub duration_s: Option<u64>,
    /// Messages per publisher.
    pub count: Option<u64>,
    /// Most unconfirmed messages per publisher.
    pub max_inflight: u32,
    /// Entries per Publish frame.
    pub batch: u32,
    /// Messages per sub-batch entry, if any.
    pub sub_entry: Option<u16>,
    /// Where consumers start.
    pub offset: String,
    /// Consumers' chunk credit.
    pub credit: u16,
    /// Messages per second per publisher; 0 unlimited.
    pub rate: u32,
}

impl StreamSettings {
    /// The flags, in one line.
    pub fn describe(&self) -> String {
        let until = match (self.duration_s, self.count) {
            (Some(d), _) => format!("{d} s"),
            (None, Some(n)) => format!("{n} msgs per publisher"),
            (None, None) => String::new(),
        };
        let sub = self
            .sub_entry
            .map_or(String::new(), |n| format!(", sub-entries of {n}"));
        let rate = match self.rate {
            0 => "unlimited".to_owned(),
            r => format!("{r}/s"),
        };
        format!(
            "stream {}: {} publishers (max in flight {}, {} entries per frame{sub}), {} consumers from {} (credit {}), {} B, {until}, rate {rate}",
            self.stream,
            self.producers,
            self.max_inflight,
            self.batch,
            self.consumers,
            self.offset,
            self.credit,
            self.size,
        )
    }
}

//! What an MQTT connection's socket does beyond the shared [`Io`] (`conn_io.rs`): reading
//! until a packet is decoded, and closing with the client's last bytes drained.

pub(super) use crate::conn_io::{Io, IoEvent};
use mqtt_wire::{decode, DecodeError, Packet, ProtocolVersion};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

impl Io {
    /// Reads until one packet is decoded; `Ok(None)` when the socket closed first.
    pub async fn read_packet(
        &mut self,
        version: Option<ProtocolVersion>,
        max: usize,
    ) -> Result<Option<Packet>, DecodeError> {
        loop {
            if let Some(p) = decode(&mut self.rb.buf, version, max)? {
                return Ok(Some(p));
            }
            self.rb.prepare();
            match self.stream.read_buf(&mut self.rb.buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => self.rb.filled(n),
            }
        }
    }

    /// Sends what is still buffered (our last packets: a DISCONNECT with its reason, a refusing
    /// CONNACK) and a FIN. Then reads and discards what the client still sends until it closes
    /// too, briefly: closing with unread input would reset the connection, and the client might
    /// never read why it was closed.
    pub async fn close(&mut self) {
        self.flush_and_shutdown(Duration::from_secs(3)).await;
        let mut sink = [0u8; 1024];
        let _ = timeout(Duration::from_secs(2), async {
            while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

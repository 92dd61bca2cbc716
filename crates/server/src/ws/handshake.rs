//! The opening handshake: one HTTP/1.1 request, answered `101 Switching Protocols` or refused.
//!
//! We read the request head ourselves, bounded by [`MAX_REQUEST_HEAD`], because tungstenite's
//! own accept answers nothing to a request it cannot upgrade (it just fails), and a browser or
//! a health check that sends a plain `GET` deserves a clean HTTP error. Tungstenite still
//! judges the upgrade headers and computes `Sec-WebSocket-Accept` (`create_response`), writes
//! the response, and takes over any bytes read past the head.
//!
//! What we refuse, and how (RFC 6455 4.2; RabbitMQ's Web MQTT plugin and Mosquitto):
//! - another path: `404 Not Found`;
//! - a browser's request from a page whose `Origin` is not among the configured ones (when
//!   some are): `403 Forbidden`, as Mosquitto's `http_origins` (requests without `Origin`, from
//!   clients that are not browsers, are not concerned);
//! - a method other than GET: `405 Method Not Allowed`;
//! - no WebSocket upgrade (`Connection: Upgrade`, `Upgrade: websocket`) or another
//!   WebSocket version than 13: `426 Upgrade Required`, naming what we speak;
//! - no `mqtt` nor `mqttv3.1` among the offered subprotocols: `400 Bad Request`. The client
//!   MUST offer `mqtt` [MQTT-6.0.0-3]; RabbitMQ refuses a handshake without it with 400,
//!   Mosquitto also accepts the older `mqttv3.1` (the name early Paho clients offer). We accept
//!   both and answer with the one offered, preferring `mqtt` [MQTT-6.0.0-4];
//! - a malformed request: `400`; a head larger than [`MAX_REQUEST_HEAD`]: `431`.

use super::stream::{WsStream, MAX_OUT_FRAME};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::server::{create_response, write_response};
use tokio_tungstenite::tungstenite::http::{self, HeaderValue, Request};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

/// The largest request head (request line and headers) we read. Cowboy (RabbitMQ) allows
/// 8000 bytes of request line and 100 headers of 4096; browsers send cookies, so a little
/// more than 8 KiB, still bounded.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Most headers in the request head (cowboy's default is 100).
const MAX_HEADERS: usize = 100;

/// The subprotocols we speak, in order of preference [MQTT-6.0.0-3].
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// What a WebSocket listener needs to know.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// The path clients connect to (`/mqtt`).
    pub path: String,
    /// The largest MQTT packet accepted: a WebSocket message may be this large, plus some
    /// slack for the small packets that may share its message.
    pub max_packet_size: usize,
    /// The web origins (`https://app.example.com`) whose pages may connect; empty: any.
    pub origins: Vec<String>,
}

impl WsSettings {
    /// Tungstenite's limits: a hostile client can make us buffer one message of the MQTT
    /// maximum packet size plus slack, no more; the read buffer starts small because most
    /// MQTT connections are idle (it grows while a large frame is read).
    pub fn websocket_config(&self) -> WebSocketConfig {
        let max = self.max_packet_size.saturating_add(64 * 1024);
        WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(MAX_OUT_FRAME)
            // Never reached while `WsStream` waits for tungstenite's buffer to drain before
            // the next message; a bound nonetheless.
            .max_write_buffer_size(4 * MAX_OUT_FRAME)
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
    }
}

/// Why an upgrade request was refused (the client got the HTTP status, if any, and is
/// closed). One log line per refusal, by the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The request was for another path (404).
    #[error("no WebSocket endpoint at {path:?} (404)")]
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// A browser's request from an origin that is not allowed (403).
    #[error("origin {origin:?} is not allowed (403)")]
    Origin {
        /// The `Origin` header (truncated).
        origin: String,
    },
    /// A method other than GET (405).
    #[error("method {0} is not GET (405)")]
    Method(String),
    /// A plain HTTP request, or another WebSocket version (426).
    #[error("not a WebSocket upgrade: {0} (426)")]
    NotUpgrade(String),
    /// Neither `mqtt` nor `mqttv3.1` offered (400).
    #[error("no MQTT subprotocol offered ({offered:?}) (400)")]
    Subprotocol {
        /// What the client offered.
        offered: String,
    },
    /// The request could not be parsed, or the upgrade headers are broken (400).
    #[error("bad request: {0} (400)")]
    BadRequest(String),
    /// The request head is larger than [`MAX_REQUEST_HEAD`] or has too many headers (431).
    #[error("request head too large (431)")]
    TooLarge,
    /// The client closed before its request was complete (nothing answered).
    #[error("closed before the end of the request")]
    Closed,
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Refusal {
    /// The status line and any extra headers of the answer (none when nothing is answered).
    fn answer(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Refusal::NotFound { .. } => Some(("404 Not Found", "")),
            Refusal::Origin { .. } => Some(("403 Forbidden", "")),
            Refusal::Method(_) => Some(("405 Method Not Allowed", "Allow: GET\r\n")),
            Refusal::NotUpgrade(_) => Some((
                "426 Upgrade Required",
                "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
            )),
            Refusal::Subprotocol { .. } | Refusal::BadRequest(_) => Some(("400 Bad Request", "")),
            Refusal::TooLarge => Some(("431 Request Header Fields Too Large", "")),
            Refusal::Closed | Refusal::Io(_) => None,
        }
    }
}

/// Answers the upgrade request on `stream` and returns the MQTT byte stream, or answers an
/// HTTP error, closes and says why. The caller bounds the whole in time (the handshake
/// timeout), as a slow client could otherwise hold the connection open.
pub async fn upgrade<S>(mut stream: S, settings: &WsSettings) -> Result<WsStream<S>, Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (head, tail) = match read_head(&mut stream).await {
        Ok(read) => read,
        Err(refusal) => return Err(refuse(stream, refusal).await),
    };
    let response = match upgrade_response(&head, settings) {
        Ok(response) => response,
        Err(refusal) => return Err(refuse(stream, refusal).await),
    };
    let mut bytes = Vec::with_capacity(256);
    write_response(&mut bytes, &response).map_err(|e| Refusal::BadRequest(e.to_string()))?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    // Anything the client sent after its request (it may not wait for our answer) is the
    // start of its first frames.
    let ws = WebSocketStream::from_partially_read(
        stream,
        tail,
        Role::Server,
        Some(settings.websocket_config()),
    )
    .await;
    Ok(WsStream::new(ws))
}

/// Reads until the end of the request head; returns it parsed, and the bytes read past it.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(Request<()>, Vec<u8>), Refusal> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let room = (MAX_REQUEST_HEAD - buf.len()).min(chunk.len());
        if room == 0 {
            return Err(Refusal::TooLarge);
        }
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(Refusal::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let request = to_http(&parsed)?;
                return Ok((request, buf.split_off(len)));
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooLarge),
            Err(e) => return Err(Refusal::BadRequest(e.to_string())),
        }
    }
}

/// The parsed head as an `http::Request`, which tungstenite's `create_response` judges.
fn to_http(parsed: &httparse::Request<'_, '_>) -> Result<Request<()>, Refusal> {
    let bad = |e: http::Error| Refusal::BadRequest(e.to_string());
    let mut builder = Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"))
        .version(match parsed.version {
            Some(1) => http::Version::HTTP_11,
            _ => http::Version::HTTP_10,
        });
    for header in parsed.headers.iter() {
        builder = builder.header(header.name, header.value);
    }
    builder.body(()).map_err(bad)
}

/// Judges the request; the `101` answer when it is an MQTT WebSocket upgrade on our path.
fn upgrade_response(
    request: &Request<()>,
    settings: &WsSettings,
) -> Result<http::Response<()>, Refusal> {
    // The query string is ignored, as RabbitMQ's router does (some clients carry tokens in it).
    if request.uri().path() != settings.path {
        return Err(Refusal::NotFound {
            path: request.uri().path().to_owned(),
        });
    }
    if let Some(origin) = request.headers().get("Origin") {
        let allowed = settings.origins.is_empty()
            || origin.to_str().is_ok_and(|o| {
                settings
                    .origins
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(o))
            });
        if !allowed {
            return Err(Refusal::Origin {
                origin: String::from_utf8_lossy(origin.as_bytes())
                    .chars()
                    .take(128)
                    .collect(),
            });
        }
    }
    let mut response = create_response(request).map_err(|e| match e {
        WsError::Protocol(ProtocolError::WrongHttpMethod) => {
            Refusal::Method(request.method().to_string())
        }
        WsError::Protocol(
            p @ (ProtocolError::MissingConnectionUpgradeHeader
            | ProtocolError::MissingUpgradeWebSocketHeader
            | ProtocolError::MissingSecWebSocketVersionHeader),
        ) => Refusal::NotUpgrade(p.to_string()),
        other => Refusal::BadRequest(other.to_string()),
    })?;
    let protocol = subprotocol(request).ok_or_else(|| Refusal::Subprotocol {
        offered: offered(request),
    })?;
    response
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
    Ok(response)
}

/// The subprotocol we answer with: `mqtt` if offered, else `mqttv3.1` if offered.
fn subprotocol(request: &Request<()>) -> Option<&'static str> {
    let offers: Vec<&str> = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // Subprotocol names are compared exactly (RFC 6455 4.1: case-sensitive tokens).
    SUBPROTOCOLS
        .into_iter()
        .find(|ours| offers.iter().any(|offer| offer == ours))
}

/// What the client offered, for the log line (bounded: it comes from the client).
fn offered(request: &Request<()>) -> String {
    let all: Vec<&str> = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    all.join(", ").chars().take(128).collect()
}

/// Answers the refusal (when it has an answer), closes, and returns it for the log line.
///
/// After our answer and a FIN, we read and drop what the client still sends, briefly: closing
/// with unread input would reset the connection, and the client might never read the answer.
async fn refuse<S>(mut stream: S, refusal: Refusal) -> Refusal
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some((status, extra)) = refusal.answer() {
        let body = status;
        let answer = format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.flush().await;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let mut left = 64 * 1024usize;
    let _ = timeout(Duration::from_secs(1), async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 || n >= left {
                break;
            }
            left -= n;
        }
    })
    .await;
    refusal
}

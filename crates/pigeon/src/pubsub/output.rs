//! How `pigeon sub` prints what it receives: the body alone on a line (mosquitto_sub's default),
//! `topic body` with `-v`, or one JSON object per line with `--format json`.

use super::args::Format;
use base64::Engine;
use serde_json::{Map, Value};
use std::io::Write;

/// One message received, whatever the protocol.
pub struct Received<'a> {
    /// The MQTT topic, or the AMQP routing key.
    pub topic: &'a str,
    pub body: &'a [u8],
    /// Protocol fields for JSON: `exchange`, `routing_key`, `properties`, or `topic`, `qos`...
    pub fields: Map<String, Value>,
}

/// Prints one message on stdout and flushes it (a reader of a pipe sees each as it comes).
pub fn print(format: Format, verbose: bool, message: Received<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Text => {
            if verbose {
                out.write_all(message.topic.as_bytes())?;
                out.write_all(b" ")?;
            }
            out.write_all(message.body)?;
            out.write_all(b"\n")?;
        }
        Format::Json => {
            let mut object = message.fields;
            match std::str::from_utf8(message.body) {
                Ok(text) => object.insert("body".into(), Value::from(text)),
                Err(_) => object.insert(
                    "body_base64".into(),
                    Value::from(base64::engine::general_purpose::STANDARD.encode(message.body)),
                ),
            };
            serde_json::to_writer(&mut out, &Value::Object(object))?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()
}

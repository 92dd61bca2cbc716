//! `export_definitions` and `import_definitions`: RabbitMQ's definitions JSON.

use super::{quoted, Ctx};
use crate::ctl::args::arity;
use crate::ctl::error::{CtlError, CtlResult};
use serde_json::Value;
use std::io::{Read, Write};

fn json_format_only(ctx: &Ctx) -> CtlResult {
    match ctx.inv.opts.flag("format") {
        None | Some("json") => Ok(()),
        Some(other) => Err(CtlError::Usage(format!(
            "format {other:?} is not supported: definitions are JSON"
        ))),
    }
}

/// `export_definitions <file | ->`: RabbitMQ's definitions JSON.
pub fn export_definitions(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    json_format_only(ctx)?;
    let target = ctx.arg(0);
    let defs = ctx.node.get("/api/definitions")?;
    let text = format!("{defs}\n");
    if target == "-" {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        return Ok(());
    }
    ctx.out.banner(&format!(
        "Exporting definitions in JSON to a file at {} ...",
        quoted(target)
    ));
    std::fs::write(target, text).map_err(|e| CtlError::Data(format!("cannot write {target}: {e}")))
}

/// `import_definitions <file | ->`: what Pigeon cannot honour is printed as warnings.
pub fn import_definitions(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    json_format_only(ctx)?;
    let source = ctx.arg(0);
    let text = if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CtlError::Data(format!("cannot read standard input: {e}")))?;
        text
    } else {
        std::fs::read_to_string(source).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                CtlError::Data(format!("Bad argument: File {source} does not exist"))
            }
            _ => CtlError::Data(format!("cannot read {source}: {e}")),
        })?
    };
    let defs: Value = serde_json::from_str(&text)
        .map_err(|e| CtlError::Data(format!("{source} is not valid JSON: {e}")))?;
    let from = if source == "-" {
        "standard input"
    } else {
        source
    };
    ctx.out.banner(&format!(
        "Importing definitions in JSON from a file at {} ...",
        quoted(from)
    ));
    let reply = ctx.node.send("POST", "/api/definitions", Some(&defs))?;
    let warnings = reply
        .body
        .get("warnings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for w in &warnings {
        let w = w.as_str().map_or_else(|| w.to_string(), String::from);
        eprintln!("Warning: {w}");
    }
    ctx.out.line("Successfully imported definitions");
    Ok(())
}

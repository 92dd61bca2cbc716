//! The resource limits: `set_disk_free_limit` and `set_vm_memory_high_watermark`, through
//! Pigeon's own `/api/pigeon/...` endpoints (rabbitmqctl sets them over Erlang distribution).

use super::Ctx;
use crate::ctl::args::arity;
use crate::ctl::error::{CtlError, CtlResult};
use serde_json::json;

/// An information unit as RabbitMQ parses it (`rabbit_resource_monitor_misc:
/// parse_information_unit`): digits, then `k`/`kiB` (1024), `kB` (1000), `M`/`MiB`,
/// `MB`, `G`/`GiB`, `GB`, in any case.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn fraction(text: &str) -> CtlResult<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or_else(|| CtlError::Data(format!("{text:?} is not a non-negative number")))
}

/// `set_disk_free_limit <bytes>` or `set_disk_free_limit mem_relative <fraction>`.
pub fn set_disk_free_limit(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 2)?;
    let url = ctx.node.url();
    let body = match (ctx.arg(0), ctx.inv.args.len()) {
        ("mem_relative", 2) => {
            let f = fraction(ctx.arg(1))?;
            ctx.out.banner(&format!(
                "Setting disk free limit on {url} to {} times the total RAM ...",
                ctx.arg(1)
            ));
            json!({ "mem_relative": f })
        }
        (limit, 1) => {
            let bytes = parse_bytes(limit).ok_or_else(|| {
                CtlError::Data(format!(
                    "{limit:?} is not an amount of bytes (such as 50MB)"
                ))
            })?;
            ctx.out.banner(&format!(
                "Setting disk free limit on {url} to {limit} bytes ..."
            ));
            json!({ "absolute": bytes })
        }
        _ => {
            return Err(CtlError::Usage(
                "usage: set_disk_free_limit <bytes> | mem_relative <fraction>".into(),
            ))
        }
    };
    ctx.node
        .send("PUT", "/api/pigeon/disk_free_limit", Some(&body))?;
    Ok(())
}

/// `set_vm_memory_high_watermark <fraction>` or `... absolute <bytes>`.
pub fn set_vm_memory_high_watermark(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 2)?;
    let url = ctx.node.url();
    let body = match (ctx.arg(0), ctx.inv.args.len()) {
        ("absolute", 2) => {
            let limit = ctx.arg(1);
            let bytes = parse_bytes(limit).ok_or_else(|| {
                CtlError::Data(format!("{limit:?} is not an amount of bytes (such as 2GB)"))
            })?;
            ctx.out.banner(&format!(
                "Setting memory threshold on {url} to {limit} bytes ..."
            ));
            json!({ "absolute": bytes })
        }
        (f, 1) => {
            let value = fraction(f)?;
            ctx.out
                .banner(&format!("Setting memory threshold on {url} to {f} ..."));
            json!({ "relative": value })
        }
        _ => {
            return Err(CtlError::Usage(
                "usage: set_vm_memory_high_watermark <fraction> | absolute <bytes>".into(),
            ))
        }
    };
    ctx.node
        .send("PUT", "/api/pigeon/vm_memory_high_watermark", Some(&body))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn information_units_are_rabbitmqs() {
        assert_eq!(parse_bytes("50000000"), Some(50_000_000));
        assert_eq!(parse_bytes("60MB"), Some(60_000_000));
        assert_eq!(parse_bytes("1GB"), Some(1_000_000_000));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("512k"), Some(512 * 1024));
        assert_eq!(parse_bytes("3kB"), Some(3000));
        assert_eq!(parse_bytes("1.5GB"), None);
        assert_eq!(parse_bytes("MB"), None);
        assert_eq!(parse_bytes("10TB"), None);
    }
}

//! rabbitmq-streams' super stream commands: `add_super_stream` and `delete_super_stream`
//! (deps/rabbitmq_stream's `AddSuperStreamCommand`, `DeleteSuperStreamCommand`), over
//! `/api/stream/super-streams/{vhost}/{name}` (RabbitMQ's `PUT`; the `DELETE` is Pigeon's).
//! Same options, checks, texts and exit codes: a refused option is 64 (the CLI's
//! `validation_failure`), a refusal by the node 70 (`exit_software`).

use super::Ctx;
use crate::ctl::args::arity;
use crate::ctl::client::seg;
use crate::ctl::error::{CtlError, CtlResult};
use serde_json::{json, Map, Value};

/// `add_super_stream <name> [--vhost <vhost>] [--partitions <n> | --binding-keys <k1,k2>]
/// [--max-length-bytes ..] [--max-age ..] [--stream-max-segment-size-bytes ..]
/// [--leader-locator ..] [--initial-cluster-size ..]`.
pub fn add_super_stream(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let name = ctx.arg(0);
    let opts = &ctx.inv.opts;
    // `validate/2`, in its order.
    let (partitions, binding_keys, routing_keys) = (
        opts.flag("partitions"),
        opts.flag("binding-keys"),
        opts.flag("routing-keys"),
    );
    if routing_keys.is_some() && binding_keys.is_some() {
        return Err(CtlError::Usage("Specify --binding-keys only.".into()));
    }
    if partitions.is_some() && (binding_keys.is_some() || routing_keys.is_some()) {
        return Err(CtlError::Usage(
            "Specify --partitions or --binding-keys, not both.".into(),
        ));
    }
    let partitions = match partitions {
        Some(p) => {
            let n: i64 = p.parse().map_err(|_| {
                CtlError::Usage(format!("--partitions takes an integer, not {p:?}"))
            })?;
            if n < 1 {
                return Err(CtlError::Usage(
                    "The partition number must be greater than 0".into(),
                ));
            }
            Some(n)
        }
        None => None,
    };
    let arguments = stream_arguments(ctx)?;
    // `merge_defaults/2`: 3 partitions unless keys are given (`--routing-keys` is the old
    // name of `--binding-keys`).
    let mut body = Map::new();
    match binding_keys.or(routing_keys) {
        Some(keys) => {
            body.insert("binding-keys".into(), json!(keys));
        }
        None => {
            body.insert("partitions".into(), json!(partitions.unwrap_or(3)));
        }
    }
    body.insert("arguments".into(), Value::Object(arguments));
    ctx.out.banner("Adding a super stream...");
    let path = path(ctx.vhost(), name);
    let reply = ctx
        .node
        .call("PUT", &path, Some(&Value::Object(body)), &[])?;
    match reply.status {
        _ if reply.ok() => {
            ctx.out
                .line(&format!("Super stream {name} has been created"));
            Ok(())
        }
        400 => Err(CtlError::Software(reply.reason())),
        404 => Err(CtlError::Data(format!(
            "virtual host '{}' does not exist",
            ctx.vhost()
        ))),
        _ => Err(ctx.node.refused(&reply)),
    }
}

/// `delete_super_stream <name> [--vhost <vhost>]`.
pub fn delete_super_stream(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let name = ctx.arg(0);
    ctx.out.banner("Deleting a super stream...");
    let reply = ctx
        .node
        .call("DELETE", &path(ctx.vhost(), name), None, &[])?;
    match reply.status {
        _ if reply.ok() => {
            ctx.out
                .line(&format!("Super stream {name} has been deleted"));
            Ok(())
        }
        // rabbit_stream_manager's `{error, stream_not_found}`, printed as the CLI does.
        404 => Err(CtlError::Software("stream_not_found".into())),
        _ => Err(ctx.node.refused(&reply)),
    }
}

fn path(vhost: &str, name: &str) -> String {
    format!("/api/stream/super-streams/{}/{}", seg(vhost), seg(name))
}

/// The partitions' arguments from the options (`validate_stream_arguments` and
/// `stream_arguments`): sizes as information units, the age as an ISO 8601 duration sent in
/// seconds (`"3600s"`), the leader locator and the initial cluster size checked.
fn stream_arguments(ctx: &Ctx) -> CtlResult<Map<String, Value>> {
    let opts = &ctx.inv.opts;
    let mut out = Map::new();
    if let Some(v) = opts.flag("max-length-bytes") {
        let bytes = information_unit(v).ok_or_else(|| {
            CtlError::Usage(
                "Invalid value for --max-length-bytes, valid example values: 100gb, 50mb".into(),
            )
        })?;
        out.insert("max-length-bytes".into(), json!(bytes.to_string()));
    }
    if let Some(v) = opts.flag("max-age") {
        let secs = iso8601_seconds(v).ok_or_else(|| {
            CtlError::Usage(
                "Invalid value for --max-age, the value must a ISO 8601 duration, e.g. e.g. \
                 PT10M30S for 10 minutes 30 seconds, P5DT8H for 5 days 8 hours."
                    .into(),
            )
        })?;
        out.insert("max-age".into(), json!(format!("{secs}s")));
    }
    if let Some(v) = opts.flag("stream-max-segment-size-bytes") {
        let bytes = information_unit(v).ok_or_else(|| {
            CtlError::Usage(
                "Invalid value for --stream-max-segment-size-bytes, valid example values: \
                 100gb, 50mb"
                    .into(),
            )
        })?;
        out.insert(
            "stream-max-segment-size-bytes".into(),
            json!(bytes.to_string()),
        );
    }
    if let Some(v) = opts.flag("leader-locator") {
        // `random` and `least-leaders` are deprecated names of `balanced`.
        let locator =
            match v {
                "client-local" => "client-local",
                "balanced" | "random" | "least-leaders" => "balanced",
                _ => return Err(CtlError::Usage(
                    "Invalid value for --leader-locator, valid values are client-local, balanced."
                        .into(),
                )),
            };
        out.insert("queue-leader-locator".into(), json!(locator));
    }
    if let Some(v) = opts.flag("initial-cluster-size") {
        match v.trim().parse::<i64>() {
            Ok(n) if n > 0 => {
                out.insert("initial-cluster-size".into(), json!(n.to_string()));
            }
            Ok(_) => {
                return Err(CtlError::Usage(
                    "Invalid value for --initial-cluster-size, the value must be positive.".into(),
                ))
            }
            Err(_) => {
                return Err(CtlError::Usage(
                    "Invalid value for --initial-cluster-size, the value must be a positive \
                     integer."
                        .into(),
                ))
            }
        }
    }
    Ok(out)
}

/// An amount of bytes as RabbitMQ 3.13+ reads one (rabbit_resource_monitor_misc
/// `parse_information_unit`): digits, then optionally `k`/`K`/`kB`/`KB`/`kb`/`Kb` (1000),
/// `M...` (10^6), `G...`, `T...`, `P...`, or `Ki`/`kiB`/`KiB`... (1024), `Mi`... (2^20),
/// `Gi`..., `Ti`...; anything else is refused.
fn information_unit(text: &str) -> Option<u64> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let binary = |p: u32| 1u64 << (10 * p);
    let decimal = |p: u32| 1000u64.pow(p);
    let factor = match unit {
        "" => 1,
        "kiB" | "KiB" | "KIB" | "kib" | "ki" | "Ki" => binary(1),
        "MiB" | "MIB" | "mib" | "Mi" => binary(2),
        "GiB" | "GIB" | "gib" | "Gi" => binary(3),
        "TiB" | "TIB" | "tib" | "Ti" => binary(4),
        "k" | "K" | "KB" | "kB" | "kb" | "Kb" => decimal(1),
        "m" | "M" | "MB" | "mb" | "Mb" => decimal(2),
        "g" | "G" | "GB" | "gb" | "Gb" => decimal(3),
        "TB" | "tb" | "Tb" => decimal(4),
        "p" | "P" | "PB" | "pb" | "Pb" => decimal(5),
        _ => return None,
    };
    number.checked_mul(factor)
}

/// An ISO 8601 duration (`PT10M30S`, `P5DT8H`) in seconds, as rabbit_date_time
/// `parse_duration` reads it and the CLI's `duration_to_seconds` counts it (a year 365 days,
/// a month 30; fractions of seconds dropped; the sign ignored).
fn iso8601_seconds(text: &str) -> Option<u64> {
    let rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    let rest = rest.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total: u64 = 0;
    // Each part is digits then its letter, in this order, each at most once.
    let mut take = |mut s: &str, units: &[(char, u64)], fraction_last: bool| -> Option<()> {
        let mut allowed = units.iter();
        while !s.is_empty() {
            let end = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
            let (number, tail) = s.split_at(end);
            let letter = tail.chars().next()?;
            let &(_, factor) = allowed.find(|(l, _)| *l == letter)?;
            let whole = match number.split_once('.') {
                Some((w, f)) if fraction_last && letter == 'S' && !f.is_empty() => {
                    f.bytes().all(|b| b.is_ascii_digit()).then_some(w)?
                }
                Some(_) => return None,
                None => number,
            };
            if whole.is_empty() {
                return None;
            }
            total = total.checked_add(whole.parse::<u64>().ok()?.checked_mul(factor)?)?;
            s = &tail[letter.len_utf8()..];
        }
        Some(())
    };
    take(
        date,
        &[('Y', 365 * 86_400), ('M', 30 * 86_400), ('D', 86_400)],
        false,
    )?;
    if let Some(time) = time {
        take(time, &[('H', 3_600), ('M', 60), ('S', 1)], true)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn information_units_are_rabbitmqs() {
        assert_eq!(information_unit("1000"), Some(1000));
        assert_eq!(information_unit("20gb"), Some(20_000_000_000));
        assert_eq!(information_unit("500mb"), Some(500_000_000));
        assert_eq!(information_unit("1Gi"), Some(1 << 30));
        assert_eq!(information_unit("2kiB"), Some(2048));
        assert_eq!(information_unit("5k"), Some(5000));
        assert_eq!(information_unit("lots"), None);
        assert_eq!(information_unit("5 mb"), None);
        assert_eq!(information_unit(""), None);
    }

    #[test]
    fn iso8601_durations_count_in_seconds() {
        assert_eq!(iso8601_seconds("PT10M30S"), Some(630));
        assert_eq!(iso8601_seconds("P5DT8H"), Some(5 * 86_400 + 8 * 3_600));
        assert_eq!(iso8601_seconds("P1Y"), Some(365 * 86_400));
        assert_eq!(iso8601_seconds("P1M"), Some(30 * 86_400));
        assert_eq!(iso8601_seconds("PT1M"), Some(60));
        assert_eq!(iso8601_seconds("PT1.5S"), Some(1));
        assert_eq!(iso8601_seconds("P"), Some(0));
        assert_eq!(iso8601_seconds("1h"), None);
        assert_eq!(iso8601_seconds("PT1D"), None);
        assert_eq!(iso8601_seconds("P1DT"), Some(86_400));
        assert_eq!(iso8601_seconds("P1H"), None);
        assert_eq!(iso8601_seconds("PD"), None);
        assert_eq!(iso8601_seconds("P1D1Y"), None);
    }
}

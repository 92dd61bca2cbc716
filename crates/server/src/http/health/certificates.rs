//! `GET /api/health/checks/certificate-expiration/{within}/{unit}`, the HTTP form of
//! `rabbitmq-diagnostics check_certificate_expiration`
//! (`rabbit_mgmt_wm_health_check_certificate_expiration`): every TLS listener of the node
//! whose certificate file or CA file holds a certificate that expires within the period (or
//! is not valid yet) is listed, and the check fails with 503.

use super::failed;
use crate::http::{blocking, ApiError, ApiResult, Caller, Shared};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

const DAY: f64 = 86_400.0;

/// The period in seconds: RabbitMQ's units, a month being 365/12 days and a year 365.
fn period(within: &str, unit: &str) -> ApiResult<f64> {
    let n: i64 = within
        .parse()
        .map_err(|_| ApiError::bad_request("Invalid expiration value."))?;
    let days = match unit.to_lowercase().as_str() {
        "days" => 1.0,
        "weeks" => 7.0,
        "months" => 365.0 / 12.0,
        "years" => 365.0,
        _ => {
            return Err(ApiError::bad_request(
                "Time unit not recognised. Supported units: days, weeks, months, years.",
            ))
        }
    };
    Ok(n as f64 * days * DAY)
}

pub(super) async fn expiration(
    State(http): State<Shared>,
    _caller: Caller,
    Path((within, unit)): Path<(String, String)>,
) -> ApiResult<Response> {
    let seconds = period(&within, &unit)?;
    let Some(tls) = http.state.config.tls.clone() else {
        // No TLS listener, no certificate to expire.
        return Ok(Json(json!({"status": "ok"})).into_response());
    };
    let listeners: Vec<_> = http
        .listeners
        .iter()
        .filter(|(k, _)| k.tls())
        .copied()
        .collect();
    let node = http.node();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let deadline = now.saturating_add(seconds as i64);
    // Read the files now (they may have been replaced since the listeners loaded them, and
    // the next handshake will use what is on disk).
    let (certfile, cacertfile) = blocking(move || {
        let cert = expiring(&tls.certfile, now, deadline);
        let ca = tls
            .cacertfile
            .as_ref()
            .map(|ca| expiring(ca, now, deadline))
            .unwrap_or_default();
        (
            (tls.certfile.display().to_string(), cert),
            (tls.cacertfile.map(|p| p.display().to_string()), ca),
        )
    })
    .await?;
    if certfile.1.is_empty() && cacertfile.1.is_empty() {
        return Ok(Json(json!({"status": "ok"})).into_response());
    }
    let expired: Vec<Value> = listeners
        .iter()
        .map(|(kind, addr)| {
            json!({
                "node": node,
                "protocol": crate::http::overview::protocol(*kind),
                "interface": addr.ip().to_string(),
                "port": addr.port(),
                "certfile": certfile.0,
                "cacertfile": cacertfile.0,
                "certfile_expires_on": certfile.1,
                "cacertfile_expires_on": cacertfile.1,
            })
        })
        .collect();
    if expired.is_empty() {
        return Ok(Json(json!({"status": "ok"})).into_response());
    }
    Ok(failed(
        "Certificates expiring",
        json!({ "expired": expired }),
    ))
}

/// The certificates of a PEM file that expire before `deadline` (their expiry dates, as
/// RabbitMQ writes them), and why a file or a certificate cannot be checked (unreadable, no
/// PEM certificate, not valid yet: RabbitMQ lists those as errors too).
fn expiring(path: &std::path::Path, now: i64, deadline: i64) -> Vec<String> {
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(e) => return vec![format!("error: cannot read {}: {e}", path.display())],
    };
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return vec!["error: The certificate file provided does not contain any PEM entry.".into()];
    }
    let mut out = Vec::new();
    for der in certs {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
            out.push("error: not a DER X.509 certificate".into());
            continue;
        };
        let validity = cert.validity();
        if validity.not_before.timestamp() > now {
            out.push("error: Certificate is not yet valid".into());
            continue;
        }
        let not_after = validity.not_after.timestamp();
        if not_after < deadline {
            out.push(datetime(not_after));
        }
    }
    out
}

/// `YYYY-MM-DD H:MM:SS` in UTC, RabbitMQ's format (`~w-~2.2.0w-~2.2.0w ~w:~2.2.0w:~2.2.0w`:
/// the hour is not padded).
fn datetime(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y}-{m:02}-{d:02} {}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_rabbitmq_writes_them() {
        assert_eq!(datetime(0), "1970-01-01 0:00:00");
        assert_eq!(datetime(951_782_400 + 3_723), "2000-02-29 1:02:03");
        assert_eq!(datetime(1_798_761_599), "2026-12-31 23:59:59");
    }

    #[test]
    fn periods_use_rabbitmqs_units() {
        assert_eq!(period("2", "days").ok(), Some(2.0 * DAY));
        assert_eq!(period("1", "Weeks").ok(), Some(7.0 * DAY));
        assert_eq!(period("12", "months").ok(), Some(365.0 * DAY));
        assert!(period("x", "days").is_err());
        assert!(period("1", "fortnights").is_err());
    }
}

//! The web dashboard: a single-page app served by the management listener, its files
//! embedded in the binary at build time (`assets/`: plain ES modules and hand-written CSS, no
//! build step, no CDN, so `cargo build` builds it and it works offline), plus the two
//! endpoints of Pigeon's own it needs beyond RabbitMQ's API: the live log (`log.rs`) and
//! moving messages between queues (`move_messages.rs`).
//!
//! Paths: `/` and the app's pages (`/queues`, `/queues/{vhost}/{name}`, ...: the app routes
//! with the History API, and a reload or a shared link lands here) answer `index.html`;
//! `/assets/{version}/{file}` answers the files. `version` is a hash of every file, computed
//! once: a file under the current version never changes, so it is cached for a year
//! (`immutable`), and a new binary's `index.html` names a new version. `index.html` itself is
//! `no-cache`. `/api/*` is untouched: the app is a client of it like any other, logging in
//! with HTTP basic auth (`/api/whoami`) as RabbitMQ's own UI does.
//!
//! For work on the app itself, `PIGEON_DASHBOARD_DIR=crates/server/src/http/dashboard/assets`
//! serves the files from that directory instead, read at each request and never cached, so an
//! edit shows on reload without rebuilding (only the embedded files' names are served).

mod log;
mod move_messages;

use super::Shared;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::LazyLock;

/// The app's pages: each, and anything below it, answers `index.html` (the app's router
/// reads the path). Keep in step with `assets/js/main.js`'s routes.
const PAGES: [&str; 15] = [
    "overview",
    "nodes",
    "connections",
    "channels",
    "streams",
    "exchanges",
    "queues",
    "mqtt",
    "users",
    "vhosts",
    "policies",
    "limits",
    "definitions",
    "log",
    "login",
];

pub(super) fn routes() -> Router<Shared> {
    let mut router = Router::new()
        .route("/", get(index))
        .route("/favicon.ico", get(favicon))
        .route("/assets/{version}/{*path}", get(asset));
    for page in PAGES {
        router = router
            .route(&format!("/{page}"), get(index))
            .route(&format!("/{page}/{{*rest}}"), get(index));
    }
    router.merge(log::routes()).merge(move_messages::routes())
}

/// An embedded file.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

/// Every file the app loads, embedded (a missing one fails the build).
macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, bytes: include_bytes!(concat!("assets/", $path)) }),*]
    };
}

static ASSETS: &[Asset] = assets![
    "app.css",
    "icon.svg",
    "js/main.js",
    "js/api.js",
    "js/ui.js",
    "js/chart.js",
    "js/format.js",
    "js/rates.js",
    "js/table.js",
    "js/pages/overview.js",
    "js/pages/nodes.js",
    "js/pages/connections.js",
    "js/pages/exchanges.js",
    "js/pages/queues.js",
    "js/pages/queue.js",
    "js/pages/mqtt.js",
    "js/pages/admin.js",
    "js/pages/definitions.js",
    "js/pages/log.js",
];

const INDEX: &str = include_str!("assets/index.html");

/// A hash of every file (FNV-1a: stable across runs and builds of the same files).
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for a in ASSETS {
        for b in a.path.bytes().chain(a.bytes.iter().copied()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
});

/// `index.html` with the assets' version filled in.
static INDEX_PAGE: LazyLock<String> = LazyLock::new(|| INDEX.replace("__VERSION__", &VERSION));

/// The content type of a file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The page's own rules: scripts, styles and requests from this origin only (the app needs
/// nothing else), no framing (clickjacking), no referrer leaking queue names.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn with_headers(mut response: Response, cache: &'static str) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The development directory, if `PIGEON_DASHBOARD_DIR` names one.
static DEV_DIR: LazyLock<Option<std::path::PathBuf>> =
    LazyLock::new(|| std::env::var_os("PIGEON_DASHBOARD_DIR").map(std::path::PathBuf::from));

/// A file from the development directory (`None`: not there, or no such directory).
fn dev_file(path: &str) -> Option<Vec<u8>> {
    std::fs::read(DEV_DIR.as_ref()?.join(path)).ok()
}

async fn index() -> Response {
    let page = match dev_file("index.html") {
        Some(bytes) => String::from_utf8_lossy(&bytes).replace("__VERSION__", "dev"),
        None => INDEX_PAGE.clone(),
    };
    let mut response = ([(header::CONTENT_TYPE, content_type("index.html"))], page).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    with_headers(response, "no-cache")
}

fn not_found() -> Response {
    with_headers(
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Not Found\n",
        )
            .into_response(),
        "no-cache",
    )
}

async fn asset(Path((version, path)): Path<(String, String)>) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.path == path) else {
        return not_found();
    };
    if let Some(bytes) = dev_file(a.path) {
        return with_headers(
            ([(header::CONTENT_TYPE, content_type(a.path))], bytes).into_response(),
            "no-cache",
        );
    }
    // An older page asking for an older version gets today's file, uncached.
    let cache = if version == *VERSION {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    with_headers(
        ([(header::CONTENT_TYPE, content_type(a.path))], a.bytes).into_response(),
        cache,
    )
}

/// Browsers ask for `/favicon.ico` whatever the page says: the SVG icon.
async fn favicon() -> Response {
    match ASSETS.iter().find(|a| a.path == "icon.svg") {
        Some(a) => with_headers(
            ([(header::CONTENT_TYPE, content_type(a.path))], a.bytes).into_response(),
            "public, max-age=86400",
        ),
        None => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_known_content_type_and_the_index_names_the_version() {
        for a in ASSETS {
            assert_ne!(
                content_type(a.path),
                "application/octet-stream",
                "{}",
                a.path
            );
        }
        assert!(INDEX.contains("__VERSION__"));
        assert!(!INDEX_PAGE.contains("__VERSION__"));
        assert_eq!(VERSION.len(), 12);
    }
}

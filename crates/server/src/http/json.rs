//! JSON at the edge: request bodies (malformed -> 400 `not_json`, unknown fields ignored, as RabbitMQ's
//! `rabbit_mgmt_util:with_decode` does), broker values <-> JSON, and the list answers with
//! RabbitMQ's filtering, sorting, paging and `columns` (`rabbit_mgmt_util:augment_resources`).

use super::{ApiError, ApiResult};
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use pigeon_broker::{Table, Value};
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

/// Parses a request body. An empty body is `{}` (RabbitMQ accepts a PUT without one).
/// Anything but a JSON object is 400 `not_json`, as `rabbit_mgmt_util:decode/1` answers it
/// (with its own words for a JSON string, which is JSON encoded twice).
pub(crate) fn body(bytes: &Bytes) -> ApiResult<Map<String, Json>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Json>(bytes) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(Json::String(_)) => Err(ApiError::bad_request(
            "invalid payload: the request body JSON-decoded to a string. Is the input doubly-JSON-encoded?",
        )),
        Ok(_) | Err(_) => Err(ApiError::bad_request("not_json")),
    }
}

/// A body over [`super::MAX_BODY_SIZE`]: axum's limit answers 413, RabbitMQ 400
/// `Exceeded HTTP request body size limit` (`rabbit_mgmt_util:read_complete_body`), which
/// is what clients see here too (a `map_response` layer over every route).
pub(crate) async fn body_limit_answer(response: Response) -> Response {
    if response.status() != axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    tracing::warn!(
        limit = super::MAX_BODY_SIZE,
        "management API: request body over the limit, refused"
    );
    ApiError::bad_request("Exceeded HTTP request body size limit").into_response()
}

/// A string field (absent: `None`; another type: 400).
pub(crate) fn opt_str<'a>(map: &'a Map<String, Json>, key: &str) -> ApiResult<Option<&'a str>> {
    match map.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

/// A string field that must be there: 400 "`key` is required" otherwise.
pub(crate) fn req_str<'a>(map: &'a Map<String, Json>, key: &str) -> ApiResult<&'a str> {
    opt_str(map, key)?.ok_or_else(|| ApiError::bad_request(format!("{key} is required")))
}

/// A boolean field; RabbitMQ also takes `"true"` / `"false"` strings (forms of the UI).
pub(crate) fn opt_bool(map: &Map<String, Json>, key: &str) -> ApiResult<Option<bool>> {
    match map.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(Json::String(s)) if s == "true" => Ok(Some(true)),
        Some(Json::String(s)) if s == "false" => Ok(Some(false)),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a boolean"))),
    }
}

/// Tags: a comma-separated string or a list of strings (RabbitMQ takes both).
pub(crate) fn tags(map: &Map<String, Json>, key: &str) -> ApiResult<Option<Vec<String>>> {
    match map.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(pigeon_broker::access::parse_tags(s))),
        Some(Json::Array(list)) => list
            .iter()
            .map(|t| match t {
                Json::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                _ => Err(ApiError::bad_request(format!("{key} must be strings"))),
            })
            .collect::<ApiResult<Vec<String>>>()
            .map(Some),
        Some(_) => Err(ApiError::bad_request(format!(
            "{key} must be a string or a list"
        ))),
    }
}

/// `arguments`: a JSON object of declare or binding arguments.
pub(crate) fn arguments(map: &Map<String, Json>) -> ApiResult<Table> {
    match map.get("arguments") {
        None | Some(Json::Null) => Ok(Table::new()),
        Some(Json::Object(args)) => Ok(table(args)),
        Some(_) => Err(ApiError::bad_request("arguments must be an object")),
    }
}

/// A JSON object as a broker table.
pub(crate) fn table(map: &Map<String, Json>) -> Table {
    Table(
        map.iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect::<Vec<_>>(),
    )
}

/// A JSON value as a broker value (numbers that are integers stay integers).
pub(crate) fn value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Void,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i),
            (None, Some(u), _) => Value::UInt(u),
            (_, _, Some(f)) => Value::Float(f),
            _ => Value::Void,
        },
        Json::String(s) => Value::Str(Bytes::copy_from_slice(s.as_bytes())),
        Json::Array(list) => Value::Array(list.iter().map(value).collect()),
        Json::Object(map) => Value::Table(table(map)),
    }
}

/// A broker table as a JSON object.
pub(crate) fn table_json(t: &Table) -> Json {
    Json::Object(
        t.iter()
            .map(|(k, v)| (k.to_string(), value_json(v)))
            .collect(),
    )
}

/// A broker value as JSON (bytes that are not UTF-8 are shown lossily, as RabbitMQ does).
pub(crate) fn value_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Float(f) => json!(f),
        Value::Decimal { scale, value } => {
            json!(f64::from(*value) / 10f64.powi(i32::from(*scale)))
        }
        Value::Str(b) | Value::Bytes(b) => json!(String::from_utf8_lossy(b)),
        Value::Timestamp(t) => json!(t),
        Value::Array(list) => Json::Array(list.iter().map(value_json).collect()),
        Value::Table(t) => table_json(t),
        Value::Void => Json::Null,
    }
}

/// The query of a list endpoint (`rabbit_mgmt_util:pagination_params`, `sort`, `columns`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    page: Option<String>,
    page_size: Option<String>,
    name: Option<String>,
    use_regex: Option<String>,
    sort: Option<String>,
    sort_reverse: Option<String>,
    columns: Option<String>,
}

/// The largest page RabbitMQ serves (`?MAX_PAGE_SIZE`).
const MAX_PAGE_SIZE: usize = 500;

/// `page` and `page_size` (400 when out of range).
fn paging(q: &ListQuery) -> ApiResult<(Option<usize>, usize)> {
    let page = match &q.page {
        None => None,
        Some(p) => Some(
            p.parse::<usize>()
                .ok()
                .filter(|&p| p >= 1)
                .ok_or_else(|| ApiError::bad_request("page must be a positive integer"))?,
        ),
    };
    let page_size = match &q.page_size {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|&s| (1..=MAX_PAGE_SIZE).contains(&s))
            .ok_or_else(|| {
                ApiError::bad_request(format!("page_size must be between 1 and {MAX_PAGE_SIZE}"))
            })?,
    };
    Ok((page, page_size))
}

type Matcher = Box<dyn Fn(&str) -> bool>;

/// The `name` filter (a substring, case-insensitive, or with `use_regex=true` a regex).
fn name_matcher(q: &ListQuery) -> ApiResult<Option<Matcher>> {
    let Some(name) = q.name.as_deref().filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if q.use_regex.as_deref() == Some("true") {
        let re = regex::Regex::new(name)
            .map_err(|e| ApiError::bad_request(format!("invalid regex: {e}")))?;
        Ok(Some(Box::new(move |s| re.is_match(s))))
    } else {
        let needle = name.to_lowercase();
        Ok(Some(Box::new(move |s| s.to_lowercase().contains(&needle))))
    }
}

/// The answer: the plain list, or with `page` RabbitMQ's paged object. `items` are sorted
/// and filtered already, and trimmed to the page when `trimmed`.
fn answer(
    items: Vec<Json>,
    page: Option<(usize, usize)>,
    filtered: usize,
    total: usize,
    trimmed: bool,
) -> ApiResult<Response> {
    let Some((page, page_size)) = page else {
        return Ok(axum::Json(Json::Array(items)).into_response());
    };
    let page_count = filtered.div_ceil(page_size).max(1);
    if page > page_count {
        return Err(ApiError::bad_request("page_out_of_range"));
    }
    let items: Vec<Json> = if trimmed {
        items
    } else {
        items
            .into_iter()
            .skip((page - 1) * page_size)
            .take(page_size)
            .collect()
    };
    Ok(axum::Json(json!({
        "filtered_count": filtered,
        "item_count": items.len(),
        "items": items,
        "page": page,
        "page_count": page_count,
        "page_size": page_size,
        "total_count": total,
    }))
    .into_response())
}

/// Filters, sorts, pages and trims `items` as the query asks. Without `page` the answer is
/// the plain list; with it, RabbitMQ's paged object.
pub(crate) fn list(mut items: Vec<Json>, q: &ListQuery) -> ApiResult<Response> {
    let total = items.len();
    let (page, page_size) = paging(q)?;
    if let Some(matcher) = name_matcher(q)? {
        items.retain(|i| i.get("name").and_then(Json::as_str).is_some_and(&matcher));
    }
    let filtered = items.len();
    let sort = q
        .sort
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("name");
    items.sort_by(|a, b| compare(lookup(a, sort), lookup(b, sort)));
    if q.sort_reverse.as_deref() == Some("true") {
        items.reverse();
    }
    if let Some(columns) = &q.columns {
        let wanted: Vec<&str> = columns.split(',').map(str::trim).collect();
        items = items.iter().map(|i| only(i, &wanted)).collect();
    }
    answer(items, page.map(|p| (p, page_size)), filtered, total, false)
}

/// Lists objects known by vhost and name, rendering only what is answered: when the query
/// sorts by name or vhost (or not at all: RabbitMQ's default sort is vhost, then name), the
/// objects are filtered, sorted and paged by their names first, and only the page becomes
/// JSON, so that a page of 10,000 queues costs a page. Any other sort (a statistic, say)
/// renders everything and sorts the JSON.
pub(crate) fn list_named<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> (&str, &str),
    mut render: impl FnMut(&T) -> Json,
    q: &ListQuery,
) -> ApiResult<Response> {
    let by_name = match q.sort.as_deref().filter(|s| !s.is_empty()) {
        None | Some("vhost") => false,
        Some("name") => true,
        Some(_) => return list(items.iter().map(render).collect(), q),
    };
    let total = items.len();
    let (page, page_size) = paging(q)?;
    let mut items = items;
    if let Some(matcher) = name_matcher(q)? {
        items.retain(|i| matcher(key(i).1));
    }
    let filtered = items.len();
    if by_name {
        items.sort_by(|a, b| {
            let ((av, an), (bv, bn)) = (key(a), key(b));
            (an, av).cmp(&(bn, bv))
        });
    } else {
        items.sort_by(|a, b| key(a).cmp(&key(b)));
    }
    if q.sort_reverse.as_deref() == Some("true") {
        items.reverse();
    }
    let shown: &[T] = match page {
        Some(p) => {
            let start = (p - 1).saturating_mul(page_size).min(items.len());
            let end = start.saturating_add(page_size).min(items.len());
            &items[start..end]
        }
        None => &items,
    };
    let mut out: Vec<Json> = shown.iter().map(&mut render).collect();
    if let Some(columns) = &q.columns {
        let wanted: Vec<&str> = columns.split(',').map(str::trim).collect();
        out = out.iter().map(|i| only(i, &wanted)).collect();
    }
    answer(out, page.map(|p| (p, page_size)), filtered, total, true)
}

/// A dotted path (`message_stats.publish`) in an object.
fn lookup<'a>(item: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(item, |v, key| v.get(key))
}

fn compare(a: Option<&Json>, b: Option<&Json>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(Json::Number(x)), Some(Json::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Json::String(x)), Some(Json::String(y))) => x.cmp(y),
        (Some(Json::Bool(x)), Some(Json::Bool(y))) => x.cmp(y),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Only the `columns` asked for (dotted paths keep their nesting).
fn only(item: &Json, columns: &[&str]) -> Json {
    let mut out = Map::new();
    for column in columns {
        let Some(v) = lookup(item, column) else {
            continue;
        };
        let mut keys = column.split('.').peekable();
        let mut at = &mut out;
        while let Some(key) = keys.next() {
            if keys.peek().is_none() {
                at.insert(key.to_string(), v.clone());
                break;
            }
            let next = at
                .entry(key.to_string())
                .or_insert_with(|| Json::Object(Map::new()));
            match next {
                Json::Object(m) => at = m,
                _ => break,
            }
        }
    }
    Json::Object(out)
}

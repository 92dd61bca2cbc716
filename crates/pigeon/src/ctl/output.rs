//! Printing as rabbitmqctl prints (checked against rabbitmqctl 3.10/3.13 output):
//!
//! - **Banners** ("Listing queues for vhost / ...") go to stdout before the result; `--quiet`
//!   and `--silent` drop them, and so does `--formatter json` (machine-readable output).
//! - **Tables**: one line per row, columns separated by a tab, a header line of the column
//!   names first; no header when there are no rows; `--no-table-headers` and `--silent` drop it.
//!   Lists print as `[a, b]`; AMQP tables (queue arguments, client properties) as Erlang
//!   tuples, `[{"x-max-length",10},{"x-dead-letter-exchange","dlx"}]`.
//! - **JSON** (`--formatter json`): `[` and `]` on lines of their own, one object per row with
//!   its keys in column order, rows after the first prefixed by `,`; AMQP tables as
//!   `[[key, type, value], ...]` as rabbitmqctl emits them.

use super::args::{Formatter, Opts};
use serde_json::Value;
use std::io::Write;

/// How a column's values print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    /// Strings as they are, numbers and booleans as text, lists as `[a, b]`.
    Plain,
    /// An AMQP table (arguments, client properties).
    Table,
    /// JSON text (a policy's definition).
    JsonText,
}

/// The output settings of one command.
pub struct Output {
    banners: bool,
    headers: bool,
    json: bool,
}

impl Output {
    /// Output as the options ask.
    pub fn new(opts: &Opts) -> Output {
        let json = opts.formatter == Formatter::Json;
        Output {
            banners: !(opts.quiet || opts.silent || json),
            headers: !(opts.silent || opts.no_table_headers),
            json,
        }
    }

    /// Whether `--formatter json` was asked for.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Prints a banner line, unless quiet.
    pub fn banner(&self, text: &str) {
        if self.banners {
            println(text);
        }
    }

    /// Prints a result line (always: rabbitmqctl keeps these under `--quiet`).
    pub fn line(&self, text: &str) {
        println(text);
    }

    /// Prints a JSON value on one line.
    pub fn json_value(&self, value: &Value) {
        println(&value.to_string());
    }

    /// Prints rows under `columns`; `render` tells how each column prints.
    pub fn rows(&self, columns: &[String], rows: &[Vec<Value>], render: impl Fn(&str) -> Render) {
        let renders: Vec<Render> = columns.iter().map(|c| render(c)).collect();
        let mut out = String::new();
        if self.json {
            out.push_str("[\n");
            for (i, row) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('{');
                for (j, (col, value)) in columns.iter().zip(row).enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(col.clone()).to_string());
                    out.push(':');
                    let value = match renders.get(j) {
                        Some(Render::Table) => typed_table(value),
                        Some(Render::JsonText) => Value::String(value.to_string()),
                        _ => value.clone(),
                    };
                    out.push_str(&value.to_string());
                }
                out.push_str("}\n");
            }
            out.push_str("]\n");
        } else {
            if self.headers && !rows.is_empty() {
                out.push_str(&columns.join("\t"));
                out.push('\n');
            }
            for row in rows {
                let cells: Vec<String> =
                    row.iter().zip(&renders).map(|(v, r)| cell(v, *r)).collect();
                out.push_str(&cells.join("\t"));
                out.push('\n');
            }
        }
        print(&out);
    }
}

/// One table cell.
pub fn cell(value: &Value, render: Render) -> String {
    match (render, value) {
        (_, Value::Null) => String::new(),
        (Render::Table, Value::Object(_)) => erlang_table(value),
        (Render::JsonText, v) => v.to_string(),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Array(items)) => {
            let items: Vec<String> = items.iter().map(|v| cell(v, Render::Plain)).collect();
            format!("[{}]", items.join(", "))
        }
        (_, v) => v.to_string(),
    }
}

/// An AMQP table as rabbitmqctl's table formatter prints it: `[{"key",value},...]`, strings
/// quoted, nested tables likewise.
fn erlang_table(value: &Value) -> String {
    fn term(v: &Value) -> String {
        match v {
            Value::Object(_) => erlang_table(v),
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(term).collect();
                format!("[{}]", items.join(","))
            }
            Value::Null => "undefined".into(),
            v => v.to_string(),
        }
    }
    match value {
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{{{},{}}}", Value::String(k.clone()), term(v)))
                .collect();
            format!("[{}]", items.join(","))
        }
        other => term(other),
    }
}

/// An AMQP table as rabbitmqctl's JSON formatter emits it: `[[key, type, value], ...]`.
fn typed_table(value: &Value) -> Value {
    let Value::Object(map) = value else {
        return value.clone();
    };
    let items = map
        .iter()
        .map(|(k, v)| {
            let (kind, v) = match v {
                Value::Bool(_) => ("bool", v.clone()),
                Value::Number(n) if n.is_f64() => ("double", v.clone()),
                Value::Number(_) => ("long", v.clone()),
                Value::String(_) => ("longstr", v.clone()),
                Value::Array(_) => ("array", v.clone()),
                Value::Object(_) => ("table", typed_table(v)),
                Value::Null => ("void", Value::Null),
            };
            Value::Array(vec![
                Value::String(k.clone()),
                Value::String(kind.into()),
                v,
            ])
        })
        .collect();
    Value::Array(items)
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn println(text: &str) {
    print(&format!("{text}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_print_as_rabbitmqctl_prints_them() {
        assert_eq!(cell(&json!("q1"), Render::Plain), "q1");
        assert_eq!(cell(&json!(3), Render::Plain), "3");
        assert_eq!(cell(&json!(true), Render::Plain), "true");
        assert_eq!(cell(&Value::Null, Render::Plain), "");
        assert_eq!(
            cell(&json!(["monitoring", "policymaker"]), Render::Plain),
            "[monitoring, policymaker]"
        );
        assert_eq!(
            cell(
                &json!({"x-dead-letter-exchange": "dlx", "x-max-length": 10}),
                Render::Table
            ),
            r#"[{"x-dead-letter-exchange","dlx"},{"x-max-length",10}]"#
        );
        assert_eq!(cell(&json!({}), Render::Table), "[]");
        assert_eq!(
            cell(&json!({"message-ttl": 1000}), Render::JsonText),
            r#"{"message-ttl":1000}"#
        );
    }

    #[test]
    fn tables_are_typed_in_json() {
        assert_eq!(
            typed_table(&json!({"x-max-length": 10, "a": "b"})),
            json!([["a", "longstr", "b"], ["x-max-length", "long", 10]])
        );
    }
}

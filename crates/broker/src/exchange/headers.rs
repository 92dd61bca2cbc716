//! Headers matching (`x-match` = all, any, all-with-x, any-with-x), as RabbitMQ does it.

use crate::value::{Table, Value};

/// Whether a message with `headers` matches a binding with `args`.
///
/// Binding keys starting with `x-` are ignored unless the mode ends in `-with-x`; a binding value
/// of `Void` only asks for the key to be present. `all` with no keys matches every message.
pub fn matches(args: &Table, headers: Option<&Table>) -> bool {
    let (any, with_x) = match args.get_str("x-match") {
        Some("any") => (true, false),
        Some("any-with-x") => (true, true),
        Some("all-with-x") => (false, true),
        _ => (false, false),
    };
    let empty = Table::new();
    let headers = headers.unwrap_or(&empty);
    let mut wanted = args
        .iter()
        .filter(|(k, _)| *k != "x-match" && (with_x || !k.starts_with("x-")));
    let hit = |(key, want): (&str, &Value)| match headers.get(key) {
        None => false,
        Some(_) if *want == Value::Void => true,
        Some(have) => have.matches(want),
    };
    if any {
        wanted.any(hit)
    } else {
        wanted.all(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn table(entries: &[(&str, Value)]) -> Table {
        Table(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }
    fn s(v: &'static str) -> Value {
        Value::Str(Bytes::from_static(v.as_bytes()))
    }

    #[test]
    fn all_and_any() {
        let all = table(&[("x-match", s("all")), ("a", s("1")), ("b", Value::Int(2))]);
        let any = table(&[("x-match", s("any")), ("a", s("1")), ("b", Value::Int(2))]);
        let both = table(&[("a", s("1")), ("b", Value::Int(2))]);
        let one = table(&[("a", s("1"))]);
        assert!(matches(&all, Some(&both)));
        assert!(!matches(&all, Some(&one)));
        assert!(matches(&any, Some(&one)));
        assert!(!matches(&any, None));
        assert!(matches(&table(&[]), None));
    }

    #[test]
    fn x_keys_only_count_with_x() {
        let args = table(&[("x-match", s("all-with-x")), ("x-k", s("v"))]);
        assert!(!matches(&args, Some(&table(&[]))));
        assert!(matches(&args, Some(&table(&[("x-k", s("v"))]))));
        let plain = table(&[("x-match", s("all")), ("x-k", s("v"))]);
        assert!(matches(&plain, Some(&table(&[]))));
    }
}

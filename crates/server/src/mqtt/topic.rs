//! MQTT topics on the AMQP topic exchange.
//!
//! The mapping is RabbitMQ's MQTT plugin's, so mixed deployments behave the same: `/` and `.`
//! swap places (a `.` inside an MQTT level survives the round trip as `/`), the filter wildcard
//! `+` becomes `*` and `#` stays `#`.

/// An MQTT topic name as an AMQP routing key.
pub fn to_routing_key(topic: &str) -> String {
    swapped(topic)
}

/// An AMQP routing key as an MQTT topic name.
pub fn from_routing_key(key: &str) -> String {
    swapped(key)
}

/// `s` with `/` and `.` swapped: one allocation of the exact size, copied a level at a time
/// (it runs twice per MQTT message, at publish and at each delivery; collecting `chars()`
/// instead grew the string three or four times).
fn swapped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['/', '.']) {
        out.push_str(&rest[..i]);
        out.push(if rest.as_bytes()[i] == b'/' { '.' } else { '/' });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out
}

/// An MQTT topic filter as an AMQP binding pattern.
pub fn to_binding_pattern(filter: &str) -> String {
    filter
        .split('/')
        .map(|level| match level {
            "+" => "*".to_string(),
            other => other.chars().map(swap).collect(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn swap(c: char) -> char {
    match c {
        '/' => '.',
        '.' => '/',
        c => c,
    }
}

/// Whether `filter` matches `topic`, with MQTT's rules: `+` is one level, `#` the rest
/// including the parent level, and a topic starting with `$` is not matched by a filter
/// starting with a wildcard [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_round_trips_and_escapes_dots() {
        assert_eq!(to_routing_key("sensor/t1/data"), "sensor.t1.data");
        assert_eq!(to_routing_key("a.b/c"), "a/b.c");
        assert_eq!(from_routing_key(&to_routing_key("a.b/c")), "a.b/c");
        assert_eq!(to_binding_pattern("control/+/command"), "control.*.command");
        assert_eq!(to_binding_pattern("sport/#"), "sport.#");
        assert_eq!(to_binding_pattern("a.b/+"), "a/b.*");
        for t in ["", "/", ".", "a", "//a..b/", "é/ü.ß/€", "$SYS/broker/load"] {
            let expected: String = t.chars().map(swap).collect();
            assert_eq!(to_routing_key(t), expected);
            assert_eq!(from_routing_key(&expected), t);
        }
    }

    #[test]
    fn mqtt_matching_rules() {
        let cases = [
            ("sport/tennis/#", "sport/tennis", true),
            ("sport/#", "sport", true),
            ("#", "a/b", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("sport/+", "sport/", true),
            ("+/monitor", "$SYS/monitor", false),
            ("#", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/b", "a/b/c", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
        }
    }
}

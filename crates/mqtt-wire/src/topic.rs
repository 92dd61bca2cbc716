//! Validated topic names and topic filters (MQTT 5.0 section 4.7, 3.1.1 section 4.7), and
//! shared subscriptions (5.0 section 4.8.2).
//!
//! Both are UTF-8 Encoded Strings, so well-formed UTF-8 without U+0000 [MQTT-1.5.4-1]
//! [MQTT-1.5.4-2], at least one character long [MQTT-4.7.3-1] and at most 65,535 bytes
//! [MQTT-4.7.3-3]. A topic name has no wildcards [MQTT-4.7.0-1]. In a topic filter `#` stands
//! alone as the last level [MQTT-4.7.1-1] and `+` fills a whole level [MQTT-4.7.1-2]. A filter
//! that starts with `$share/` is a shared subscription, `$share/{ShareName}/{filter}`, whose share
//! name is at least one character without `/`, `+` or `#` [MQTT-4.8.2-1] and is followed by `/`
//! and a filter [MQTT-4.8.2-2]. This parsing is the same in every protocol version; whether
//! 3.1.1 clients get shared subscriptions is the server's choice.
//!
//! Statement numbers are MQTT 5.0's (3.1.1 numbers section 4.7 differently, same rules).
//!
//! Once built, the server never re-validates them: a [`TopicName`] can be routed and a
//! [`TopicFilter`] bound as they are.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// Why a string is not a valid topic name or topic filter.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// Topic names and filters are at least one character long [MQTT-4.7.3-1].
    #[error("empty")]
    Empty,
    /// Longer than the 65,535 bytes a UTF-8 Encoded String can hold [MQTT-4.7.3-3].
    #[error("longer than 65535 bytes")]
    TooLong,
    /// Contains U+0000 [MQTT-4.7.3-2].
    #[error("contains U+0000")]
    NullCharacter,
    /// A topic name contains `+` or `#` [MQTT-4.7.0-1] [MQTT-3.3.2-2].
    #[error("wildcard in topic name")]
    WildcardInName,
    /// A `#` that is not alone in the last level, or a `+` that does not fill its level
    /// [MQTT-4.7.1-1] [MQTT-4.7.1-2].
    #[error("misplaced wildcard")]
    InvalidWildcard,
    /// `$share/` without a share name, with `+` or `#` in it, or without a filter after it
    /// [MQTT-4.8.2-1] [MQTT-4.8.2-2].
    #[error("invalid shared subscription")]
    InvalidSharedSubscription,
}

const MAX_LEN: usize = u16::MAX as usize;

fn check_string(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// A topic name: where a PUBLISH goes (and a Will Message, and a Response Topic).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(String);

impl TopicName {
    /// Validates `name` as a topic name. Takes a `String` so decoding allocates once.
    pub fn new(name: impl Into<String>) -> Result<TopicName, TopicError> {
        let name = name.into();
        check_string(&name)?;
        if name.contains(['+', '#']) {
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// True for names like `$SYS/...`, which filters starting with a wildcard do not match
    /// [MQTT-4.7.2-1] and which the server may reserve for itself.
    pub fn starts_with_dollar(&self) -> bool {
        self.0.starts_with('$')
    }

    /// The levels between `/` separators (`"a//b"` has three, the middle one empty).
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }
}

/// A topic filter: what a SUBSCRIBE or UNSUBSCRIBE names, possibly with wildcards, possibly a
/// shared subscription.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicFilter(String);

/// The parts of a shared subscription filter `$share/{group}/{filter}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedSubscription<'a> {
    /// The share name: subscriptions with the same group and filter share the messages.
    pub group: &'a str,
    /// The filter matched against topic names (valid, possibly with wildcards).
    pub filter: &'a str,
}

const SHARE_PREFIX: &str = "$share/";

impl TopicFilter {
    /// Validates `filter` as a topic filter.
    pub fn new(filter: impl Into<String>) -> Result<TopicFilter, TopicError> {
        let filter = filter.into();
        check_string(&filter)?;
        match filter.strip_prefix(SHARE_PREFIX) {
            Some(rest) => {
                let (group, inner) = rest
                    .split_once('/')
                    .ok_or(TopicError::InvalidSharedSubscription)?;
                if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
                    return Err(TopicError::InvalidSharedSubscription);
                }
                check_wildcards(inner)?;
            }
            None => check_wildcards(&filter)?,
        }
        Ok(TopicFilter(filter))
    }

    /// The filter as sent, `$share/...` prefix included.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The filter, as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The share name and inner filter, if this is a shared subscription.
    pub fn shared(&self) -> Option<SharedSubscription<'_>> {
        let (group, filter) = self.0.strip_prefix(SHARE_PREFIX)?.split_once('/')?;
        Some(SharedSubscription { group, filter })
    }

    /// The part matched against topic names: the inner filter of a shared subscription, else
    /// the whole filter.
    pub fn match_filter(&self) -> &str {
        self.shared().map_or(self.as_str(), |s| s.filter)
    }

    /// True if the matched part contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.match_filter().contains(['+', '#'])
    }

    /// True if the matched part starts with `$` (e.g. `$SYS/#`): such a filter can match
    /// `$` topics, a wildcard-first one cannot [MQTT-4.7.2-1].
    pub fn starts_with_dollar(&self) -> bool {
        self.match_filter().starts_with('$')
    }

    /// Whether this filter matches `topic` (section 4.7.1): `+` matches exactly one level
    /// (possibly empty), `#` the parent level and any number of levels below, and a filter
    /// that starts with a wildcard does not match a topic starting with `$` [MQTT-4.7.2-1].
    pub fn matches(&self, topic: &TopicName) -> bool {
        let filter = self.match_filter();
        if topic.starts_with_dollar() && filter.starts_with(['+', '#']) {
            return false;
        }
        let mut f = filter.split('/');
        let mut t = topic.levels();
        loop {
            match (f.next(), t.next()) {
                (Some("#"), _) => return true,
                (None, None) => return true,
                (Some("+"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                _ => return false,
            }
        }
    }
}

/// `#` only as a whole last level [MQTT-4.7.1-1], `+` only as a whole level [MQTT-4.7.1-2].
fn check_wildcards(filter: &str) -> Result<(), TopicError> {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let ok = match level {
            "#" => levels.peek().is_none(),
            "+" => true,
            _ => !level.contains(['+', '#']),
        };
        if !ok {
            return Err(TopicError::InvalidWildcard);
        }
    }
    Ok(())
}

macro_rules! string_newtype {
    ($t:ident) => {
        impl Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl TryFrom<String> for $t {
            type Error = TopicError;
            fn try_from(s: String) -> Result<Self, TopicError> {
                $t::new(s)
            }
        }

        impl TryFrom<&str> for $t {
            type Error = TopicError;
            fn try_from(s: &str) -> Result<Self, TopicError> {
                $t::new(s)
            }
        }

        impl From<$t> for String {
            fn from(t: $t) -> String {
                t.0
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_newtype!(TopicName);
string_newtype!(TopicFilter);

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    #[test]
    fn topic_names() {
        for ok in [
            "a",
            "/",
            "a/b/c",
            "sport/tennis/player1",
            "$SYS/broker",
            " ",
            "a//b",
            "ü",
        ] {
            assert!(TopicName::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(TopicName::new("x".repeat(65_536)), Err(TopicError::TooLong));
        assert!(TopicName::new("x".repeat(65_535)).is_ok());
        assert!(name("$SYS/x").starts_with_dollar());
        assert!(!name("a/$").starts_with_dollar());
    }

    #[test]
    fn topic_filters_follow_the_wildcard_rules() {
        // Section 4.7.1 examples.
        for ok in [
            "#",
            "sport/#",
            "sport/tennis/#",
            "+",
            "+/tennis/#",
            "sport/+/player1",
            "/+",
            "+/+",
            "$SYS/#",
        ] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "sport+",
            "a/+b",
            "#/a",
            "##",
        ] {
            assert_eq!(
                TopicFilter::new(bad),
                Err(TopicError::InvalidWildcard),
                "{bad}"
            );
        }
        assert_eq!(TopicFilter::new(""), Err(TopicError::Empty));
    }

    #[test]
    fn shared_subscriptions() {
        let f = filter("$share/consumer1/sport/tennis/+");
        assert_eq!(
            f.shared(),
            Some(SharedSubscription {
                group: "consumer1",
                filter: "sport/tennis/+"
            })
        );
        assert_eq!(f.match_filter(), "sport/tennis/+");
        assert!(f.has_wildcards());
        assert_eq!(filter("$share/g/#").shared().unwrap().filter, "#");
        for bad in [
            "$share/",
            "$share//a",
            "$share/g",
            "$share/g/",
            "$share/a+/x",
            "$share/#/x",
        ] {
            assert_eq!(
                TopicFilter::new(bad),
                Err(TopicError::InvalidSharedSubscription),
                "{bad}"
            );
        }
        assert_eq!(
            TopicFilter::new("$share/g/a#"),
            Err(TopicError::InvalidWildcard)
        );
        // Not the prefix: ordinary filters.
        assert_eq!(filter("$share").shared(), None);
        assert_eq!(filter("$shared/x").shared(), None);
        assert!(filter("$SYS/#").starts_with_dollar());
    }

    #[test]
    fn matching_follows_section_4_7() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("#", "a/b/c", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            // [MQTT-4.7.2-1]
            ("#", "$SYS/x", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("$share/g/a/+", "a/b", true),
        ];
        for (f, t, expected) in cases {
            assert_eq!(filter(f).matches(&name(t)), expected, "{f} vs {t}");
        }
    }
}

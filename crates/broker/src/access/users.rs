//! Users: a name, an optional password hash and tags, as RabbitMQ's internal database keeps them
//! (`rabbitmqctl add_user`, `change_password`, `clear_password`, `set_user_tags`).

use super::password::PasswordHash;

/// Full access to the management API (RabbitMQ's `administrator`).
pub const TAG_ADMINISTRATOR: &str = "administrator";
/// Read access to everything in the management API (`monitoring`).
pub const TAG_MONITORING: &str = "monitoring";
/// May manage policies of the vhosts it can reach (`policymaker`).
pub const TAG_POLICYMAKER: &str = "policymaker";
/// May log in to the management API (`management`).
pub const TAG_MANAGEMENT: &str = "management";

/// A user of the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// `None`: no password login at all (certificate login only, as after `rabbitmqctl
    /// clear_password`).
    pub password: Option<PasswordHash>,
    /// Tags: `administrator`, `monitoring`, `policymaker`, `management`, or free-form ones
    /// (kept, shown, and meaning nothing to the broker).
    pub tags: Vec<String>,
}

impl User {
    /// A user with `password` hashed (RabbitMQ's default, salted SHA-256).
    pub fn with_password(name: &str, password: &str, tags: Vec<String>) -> User {
        User {
            name: name.to_string(),
            password: Some(super::password::hash_password(password)),
            tags: normalize_tags(tags),
        }
    }

    /// Whether the user carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// Whether the user is an `administrator`.
    pub fn is_administrator(&self) -> bool {
        self.has_tag(TAG_ADMINISTRATOR)
    }
}

/// Tags as `rabbitmqctl set_user_tags` or a definitions file write them: separated by commas
/// and/or spaces (`"administrator,monitoring"`, `"administrator monitoring"`).
pub fn parse_tags(text: &str) -> Vec<String> {
    normalize_tags(
        text.split([',', ' '])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// Drops empty and repeated tags, keeping the first order.
pub fn normalize_tags(tags: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        let t = t.trim().to_string();
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_as_rabbitmqctl_writes_them() {
        assert_eq!(
            parse_tags("administrator, monitoring custom,administrator"),
            ["administrator", "monitoring", "custom"]
        );
        assert!(parse_tags(" ").is_empty());
    }

    #[test]
    fn a_user_knows_its_tags_and_password() {
        let u = User::with_password("ann", "pw", vec!["administrator".into()]);
        assert!(u.is_administrator() && !u.has_tag("monitoring"));
        assert!(u.password.as_ref().is_some_and(|p| p.verify(b"pw")));
    }
}

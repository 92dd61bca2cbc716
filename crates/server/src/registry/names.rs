//! User and vhost names as the registry entries keep them: one shared `Arc<str>` per name for
//! every connection of that user or in that vhost.
//!
//! Every registry entry names its user and vhost (`Details`); as `String`s they were two
//! allocations of every connection (8 to 16 bytes each, ~18 bytes of an idle MQTT connection's
//! RSS) and 48 bytes of its entry, where two shared `Arc<str>`s are 32 and nothing more
//! (docs/performance.md, "Idle connections", sixth pass).

use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

/// A user or vhost name as registry entries keep it, shared ([`intern`]). A thin pointer: 8
/// bytes of every entry where an `Arc<str>` is 16 (the entry in jemalloc's 160-byte class:
/// docs/performance.md, "Idle connections", seventh pass); the extra indirection is paid
/// when a name is listed, never per message.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Name(Arc<Box<str>>);

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// The names handed out, and how many there were after the last sweep.
#[derive(Default)]
struct Names {
    set: HashSet<Name>,
    swept_at: usize,
}

/// Names kept before the first sweep of unused ones.
const SWEEP_FROM: usize = 64;

/// The shared `Arc<str>` for `name`.
///
/// Process-wide (several brokers in one test process share it harmlessly). Names nobody
/// holds any more (a deleted user's, a deleted vhost's) are dropped when the set has doubled
/// since the last sweep, so that the set stays within twice the names in use.
pub(crate) fn intern(name: &str) -> Name {
    static NAMES: OnceLock<Mutex<Names>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock();
    if let Some(n) = names.set.get(name) {
        return n.clone();
    }
    if names.set.len() >= names.swept_at.max(SWEEP_FROM) {
        names.set.retain(|n| Arc::strong_count(&n.0) > 1);
        names.swept_at = 2 * names.set.len();
    }
    let n = Name(Arc::new(name.into()));
    names.set.insert(n.clone());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_shared_and_swept_when_unused() {
        let a = intern("names-test-user");
        let b = intern("names-test-user");
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(&*a, "names-test-user");
        let weak = Arc::downgrade(&a.0);
        drop((a, b));
        // Enough other names to pass a sweep: the unused one goes.
        for i in 0..(4 * SWEEP_FROM) {
            drop(intern(&format!("names-test-{i}")));
        }
        assert!(weak.upgrade().is_none(), "swept once nobody held it");
    }
}

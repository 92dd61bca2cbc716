//! Users, permissions and limits in the store; vhosts created, deleted and recovered; the
//! bootstrap happening once.

use super::*;
use crate::message::OpaqueProperties;
use crate::queue::{PagingLimits, QueueOptions};
use crate::Broker;
use pigeon_store::{StoreOptions, SyncMode};

static CODEC: OpaqueProperties = OpaqueProperties;

/// A directory removed when dropped (the broker crate has no tempfile).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pigeon-access-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn store(&self) -> Arc<Store> {
        let options = StoreOptions {
            sync: SyncMode::Never,
            ..StoreOptions::default()
        };
        Arc::new(Store::open(&self.0, options).unwrap())
    }

    fn broker(&self) -> Arc<Broker> {
        Broker::open(self.store(), &CODEC, PagingLimits::default())
            .unwrap()
            .0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn guest_bootstrap() -> Bootstrap {
    Bootstrap {
        vhost: "/".into(),
        user: Some(DefaultUser {
            name: "guest".into(),
            password: "guest".into(),
            tags: vec!["administrator".into()],
            permission: Permission::all(),
        }),
    }
}

#[test]
fn users_permissions_and_limits_survive_a_restart() {
    let dir = TempDir::new("roundtrip");
    {
        let a = AccessControl::open(dir.store()).unwrap();
        a.add_user("ann", Some("pw"), vec!["monitoring".into()])
            .unwrap();
        a.add_user("cert", None, Vec::new()).unwrap();
        a.try_set_permission("ann", "/", Permission::all()).unwrap();
        a.try_set_permission(
            "ann",
            "v2",
            Permission {
                configure: String::new(),
                write: "^x".into(),
                read: ".*".into(),
            },
        )
        .unwrap();
        let topic = |x: &str| TopicPermission {
            exchange: x.into(),
            write: "^a".into(),
            read: "{username}.*".into(),
        };
        a.try_set_topic_permission("ann", "/", topic("amq.topic"))
            .unwrap();
        a.try_set_topic_permission("ann", "/", topic("t2")).unwrap();
        a.try_clear_topic_permissions("ann", "/", Some("t2"))
            .unwrap();
        a.try_set_vhost_limits(
            "/",
            VHostLimits {
                max_connections: Some(5),
                max_queues: None,
            },
        )
        .unwrap();
        a.try_set_user_limits(
            "ann",
            UserLimits {
                max_connections: None,
                max_channels: Some(0),
            },
        )
        .unwrap();
    }
    let a = AccessControl::open(dir.store()).unwrap();
    let ann = a.user("ann").unwrap();
    assert_eq!(ann.tags, ["monitoring"]);
    assert!(a.check_password("ann", b"pw").is_some());
    assert!(a.user("cert").unwrap().password.is_none());
    assert_eq!(a.permission("ann", "/"), Some(Permission::all()));
    assert_eq!(a.permission("ann", "v2").unwrap().write, "^x");
    let topics = a.topic_permissions("ann", "/");
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].exchange, "amq.topic");
    assert_eq!(topics[0].read, "{username}.*");
    assert_eq!(a.vhost_limits("/").max_connections, Some(5));
    assert_eq!(a.user_limits("ann").max_channels, Some(0));

    // Deleting the user takes its permissions and limits along, on disk too.
    assert!(a.delete_user("ann").unwrap());
    assert!(!a.delete_user("ann").unwrap());
    drop(a);
    let a = AccessControl::open(dir.store()).unwrap();
    assert!(a.user("ann").is_none());
    assert!(a.permission("ann", "/").is_none());
    assert!(a.topic_permissions("ann", "/").is_empty());
    assert_eq!(a.user_limits("ann"), UserLimits::default());
    assert_eq!(a.users().len(), 1);
}

#[test]
fn passwords_are_checked_the_same_way_whoever_asks() {
    let a = AccessControl::new();
    a.add_user("ann", Some("pw"), Vec::new()).unwrap();
    a.add_user("nopass", None, Vec::new()).unwrap();
    assert!(a.check_password("ann", b"pw").is_some());
    assert!(a.check_password("ann", b"pW").is_none());
    assert!(a.check_password("nobody", b"pw").is_none());
    // A passwordless user never matches, not even the empty password.
    assert!(a.check_password("nopass", b"").is_none());
    assert!(matches!(
        a.add_user("ann", Some("x"), Vec::new()),
        Err(AccessError::UserExists(_))
    ));
    a.change_password("ann", Some("new")).unwrap();
    assert!(a.check_password("ann", b"pw").is_none());
    assert!(a.check_password("ann", b"new").is_some());
    a.change_password("ann", None).unwrap();
    assert!(a.check_password("ann", b"new").is_none());
    assert!(matches!(
        a.set_tags("nobody", Vec::new()),
        Err(AccessError::NoSuchUser(_))
    ));
}

#[test]
fn invalid_patterns_are_refused_and_changes_move_the_generation() {
    let a = AccessControl::new();
    let g = a.generation();
    let bad = Permission {
        configure: "(".into(),
        write: ".*".into(),
        read: ".*".into(),
    };
    assert!(matches!(
        a.try_set_permission("u", "/", bad),
        Err(AccessError::Pattern(_))
    ));
    assert!(a.permission("u", "/").is_none());
    a.set_permission("u", "/", Permission::all());
    assert!(a.generation() > g);
}

#[test]
fn the_bootstrap_happens_once() {
    let dir = TempDir::new("bootstrap");
    {
        let b = dir.broker();
        assert!(
            b.vhost("/").is_none(),
            "a new store has no vhost before the bootstrap"
        );
        assert!(b.bootstrap(&guest_bootstrap()).unwrap());
        assert!(b.vhost("/").is_some());
        let guest = b.access().user("guest").unwrap();
        assert!(guest.is_administrator());
        assert_eq!(b.access().permission("guest", "/"), Some(Permission::all()));
        assert!(!b.bootstrap(&guest_bootstrap()).unwrap());
        // Deleting guest: it does not come back at the next start.
        assert!(b.delete_user("guest").unwrap());
    }
    let b = dir.broker();
    assert!(!b.bootstrap(&guest_bootstrap()).unwrap());
    assert!(b.access().user("guest").is_none());
    assert!(b.vhost("/").is_some(), "the default vhost is recorded");
}

#[test]
fn no_default_user_still_creates_the_default_vhost() {
    let b = Broker::new();
    let none = Bootstrap {
        vhost: "prod".into(),
        user: None,
    };
    assert!(b.bootstrap(&none).unwrap());
    assert!(b.vhost("prod").is_some());
    assert!(b.access().users().is_empty());
}

#[test]
fn a_deleted_vhost_leaves_nothing_behind() {
    let dir = TempDir::new("delete-vhost");
    let options = || QueueOptions {
        durable: true,
        ..QueueOptions::default()
    };
    let log_ids = |store: &Store| store.queue_log_ids();
    {
        let b = dir.broker();
        b.bootstrap(&guest_bootstrap()).unwrap();
        let v = b
            .add_vhost(
                "v",
                VHostInfo {
                    description: "doomed".into(),
                    tags: vec!["t".into()],
                    default_queue_type: None,
                },
            )
            .unwrap();
        v.declare_queue("q", false, options(), 0).unwrap();
        b.vhost("/")
            .unwrap()
            .declare_queue("keep", false, options(), 0)
            .unwrap();
        b.set_permissions("guest", "v", Permission::all()).unwrap();
        assert!(matches!(
            b.set_permissions("nobody", "v", Permission::all()),
            Err(AccessError::NoSuchUser(_))
        ));
        assert!(matches!(
            b.set_permissions("guest", "nowhere", Permission::all()),
            Err(AccessError::NoSuchVHost(_))
        ));
        assert_eq!(log_ids(v.store().unwrap()).len(), 2);
    }
    {
        let b = dir.broker();
        let v = b.vhost("v").expect("recovered");
        assert_eq!(v.info().description, "doomed");
        assert!(v.queue("q").is_ok());
        assert!(
            b.vhost("/").unwrap().queue("q").is_err(),
            "each vhost its own"
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hook_seen = Arc::clone(&seen);
        b.on_deleted(Arc::new(move |d: &Deleted| {
            hook_seen.lock().push(d.clone())
        }));
        assert!(b.delete_vhost("v").unwrap());
        assert!(!b.delete_vhost("v").unwrap());
        assert!(v.is_deleted());
        assert!(v.queue("q").is_err());
        assert!(v.declare_queue("late", false, options(), 0).is_err());
        assert_eq!(*seen.lock(), [Deleted::VHost("v".into())]);
        assert!(b.access().permission("guest", "v").is_none());
    }
    let b = dir.broker();
    assert!(b.vhost("v").is_none());
    assert!(b.access().permission("guest", "v").is_none());
    let store = b.vhost("/").unwrap().store().unwrap().clone();
    assert_eq!(log_ids(&store), ["/\u{0}keep"]);
}

#[test]
fn records_of_a_half_deleted_vhost_are_removed_at_start() {
    let dir = TempDir::new("half-deleted");
    {
        let b = dir.broker();
        b.bootstrap(&guest_bootstrap()).unwrap();
        let v = b.add_vhost("v", VHostInfo::default()).unwrap();
        let options = QueueOptions {
            durable: true,
            ..QueueOptions::default()
        };
        v.declare_queue("q", false, options, 0).unwrap();
        // A crash right after the vhost's own record went.
        v.store()
            .unwrap()
            .meta_delete(vhosts::VHOSTS, b"v")
            .unwrap();
    }
    let b = dir.broker();
    assert!(b.vhost("v").is_none());
    let store = b.vhost("/").unwrap().store().unwrap().clone();
    assert!(store.queue_log_ids().is_empty());
    assert!(durable::load(&store).unwrap().queues.is_empty());
}

#[test]
fn a_store_from_before_vhosts_were_recorded_keeps_its_entities() {
    let dir = TempDir::new("legacy");
    {
        // What an older Pigeon wrote: definitions in `/`, no vhost record, no marker.
        let store = dir.store();
        let options = QueueOptions {
            durable: true,
            ..QueueOptions::default()
        };
        crate::VHost::with_store("/", Some(store), PagingLimits::default())
            .declare_queue("old", false, options, 0)
            .unwrap();
    }
    {
        let b = dir.broker();
        assert!(b.vhost("/").unwrap().queue("old").is_ok());
        assert!(b.bootstrap(&guest_bootstrap()).unwrap());
    }
    let b = dir.broker();
    assert!(b.vhost("/").unwrap().queue("old").is_ok(), "recorded now");
}

use crate::durable;

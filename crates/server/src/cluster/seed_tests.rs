//! The applier's side of the set-up once per cluster (`MetaCommand::Bootstrap`) and of batches
//! (`MetaCommand::Batch`), on a real broker over a real store.

use super::apply_tests::{applier, apply};
use super::commands;
use pigeon_broker::access::User;
use pigeon_cluster::meta::Json;
use pigeon_cluster::{AppliedMarker, MetaCommand, MetaResponse, MetadataApply};

fn set_up() -> MetaCommand {
    let guest = User::with_password("guest", "guest", vec!["administrator".into()]);
    MetaCommand::Bootstrap {
        commands: vec![
            MetaCommand::AddVhost {
                name: "/".into(),
                metadata: Json("{}".into()),
            },
            MetaCommand::PutUser {
                name: "guest".into(),
                password_hash: commands::password_text(guest.password.as_ref()),
                tags: guest.tags,
            },
            MetaCommand::SetPermissions {
                user: "guest".into(),
                vhost: "/".into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            },
        ],
    }
}

#[test]
fn the_set_up_is_applied_once_and_a_snapshot_carries_that_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = applier(dir.path());
    assert_eq!(apply(&mut a, vec![set_up()]), vec![MetaResponse::Done]);
    let access = a.broker.access();
    assert!(access.user("guest").is_some());
    assert!(access.permission("guest", "/").is_some());
    // Deleted cluster-wide, then proposed again by a restarted node: stays deleted.
    let del = MetaCommand::DeleteUser {
        name: "guest".into(),
    };
    assert_eq!(
        apply(&mut a, vec![del, set_up()]),
        vec![MetaResponse::Done; 2]
    );
    assert!(a.broker.access().user("guest").is_none());
    // A node restored from a snapshot knows the set-up happened.
    let snapshot = a.snapshot().unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut b = applier(other.path());
    b.restore(&snapshot, &AppliedMarker::from_bytes(Vec::new()))
        .unwrap();
    assert!(b.broker.access().is_bootstrapped());
    apply(&mut b, vec![set_up()]);
    assert!(b.broker.access().user("guest").is_none());
}

#[test]
fn a_batch_applies_in_order_and_stops_at_its_first_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = applier(dir.path());
    let queue_in = |vhost: &str, name: &str| MetaCommand::DeclareQueue {
        vhost: vhost.into(),
        name: name.into(),
        kind: "classic".into(),
        auto_delete: false,
        arguments: Json("{}".into()),
        node: String::new(),
    };
    // A vhost, then a queue in it: the second finds the first.
    let batch = MetaCommand::Batch {
        commands: vec![
            MetaCommand::AddVhost {
                name: "v".into(),
                metadata: Json("{}".into()),
            },
            queue_in("v", "in-v"),
        ],
    };
    assert_eq!(apply(&mut a, vec![batch]), vec![MetaResponse::Done]);
    assert!(a.broker.vhost("v").unwrap().queue("in-v").is_ok());
    // A refusal (a queue in a vhost that does not exist) stops the rest.
    let batch = MetaCommand::Batch {
        commands: vec![
            queue_in("/", "first"),
            queue_in("nowhere", "refused"),
            queue_in("/", "after"),
        ],
    };
    let r = apply(&mut a, vec![batch]);
    assert!(
        matches!(r.as_slice(), [MetaResponse::Refused { code: 404, .. }]),
        "{r:?}"
    );
    let root = a.broker.vhost("/").unwrap();
    assert!(root.queue("first").is_ok());
    assert!(root.queue("after").is_err());
}

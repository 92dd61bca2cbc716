//! Tests of `stream_sac.rs`, after rabbit_stream_sac_coordinator_v4's behaviour: plain
//! streams (first registered is active, the next takes over), super stream partitions
//! (index mod consumers, stepping down then activation), connection ends.

use super::*;

fn c(connection: u64, subscription: u8) -> SacConsumer {
    SacConsumer {
        connection,
        subscription,
    }
}

fn key(stream: &str) -> GroupKey {
    GroupKey::new("/", stream, "app")
}

fn note(consumer: SacConsumer, stream: &str, active: bool, stepping_down: bool) -> Notification {
    Notification {
        consumer,
        group: key(stream),
        active,
        stepping_down,
    }
}

fn states(sac: &SacCoordinator, stream: &str) -> Vec<(SacConsumer, bool)> {
    sac.group(&key(stream))
        .map(|g| g.consumers)
        .unwrap_or_default()
}

#[test]
fn on_a_plain_stream_the_first_is_active_and_the_next_takes_over() {
    let mut sac = SacCoordinator::new();
    let (a, b, d) = (c(1, 0), c(2, 0), c(3, 7));
    assert_eq!(
        sac.register(key("s"), None, a),
        (true, vec![note(a, "s", true, false)])
    );
    assert_eq!(sac.register(key("s"), None, b), (false, vec![]));
    assert_eq!(sac.register(key("s"), None, d), (false, vec![]));
    // Registering again changes nothing.
    assert_eq!(sac.register(key("s"), None, b), (false, vec![]));
    // A passive one leaving changes nothing.
    assert_eq!(sac.unregister(&key("s"), b), vec![]);
    // The active one leaving: the first remaining takes over, and is told.
    assert_eq!(
        sac.unregister(&key("s"), a),
        vec![note(d, "s", true, false)]
    );
    assert_eq!(states(&sac, "s"), vec![(d, true)]);
    assert!(sac.is_active(&key("s"), d));
    // The last one leaving removes the group.
    assert_eq!(sac.unregister(&key("s"), d), vec![]);
    assert!(sac.group(&key("s")).is_none());
    // Unknown groups and consumers are no-ops.
    assert_eq!(sac.unregister(&key("s"), d), vec![]);
    assert_eq!(sac.activate(&key("nothing")), vec![]);
}

#[test]
fn groups_are_per_vhost_stream_and_name() {
    let mut sac = SacCoordinator::new();
    let a = c(1, 0);
    for k in [
        GroupKey::new("/", "s", "app"),
        GroupKey::new("/", "s", "other"),
        GroupKey::new("/", "t", "app"),
        GroupKey::new("v", "s", "app"),
    ] {
        let (active, _) = sac.register(k, None, a);
        assert!(active);
    }
    assert_eq!(sac.groups("/").len(), 3);
    assert_eq!(sac.groups("v").len(), 1);
    assert_eq!(sac.groups("/")[0].key, GroupKey::new("/", "s", "app"));
    assert_eq!(sac.groups("/")[0].partition_index, None);
}

#[test]
fn a_partition_goes_to_the_consumer_at_its_index_modulo_the_consumers() {
    // Partition 1 of a super stream, consumed by three applications' instances.
    let mut sac = SacCoordinator::new();
    let (a, b, d) = (c(1, 0), c(2, 0), c(3, 0));
    assert_eq!(
        sac.register(key("p-1"), Some(1), a),
        (true, vec![note(a, "p-1", true, false)])
    );
    // 1 mod 2 = 1: the newcomer should read; the active one steps down first.
    assert_eq!(
        sac.register(key("p-1"), Some(1), b),
        (false, vec![note(a, "p-1", false, true)])
    );
    assert_eq!(states(&sac, "p-1"), vec![(a, false), (b, false)]);
    // Its client answered the ConsumerUpdate: the evaluated one becomes active.
    assert_eq!(sac.activate(&key("p-1")), vec![note(b, "p-1", true, false)]);
    assert_eq!(states(&sac, "p-1"), vec![(a, false), (b, true)]);
    // 1 mod 3 = 1: still b, nothing to tell.
    assert_eq!(sac.register(key("p-1"), Some(1), d), (false, vec![]));
    // a leaves: 1 mod 2 = 1 is now d; b steps down.
    assert_eq!(
        sac.unregister(&key("p-1"), a),
        vec![note(b, "p-1", false, true)]
    );
    assert_eq!(sac.activate(&key("p-1")), vec![note(d, "p-1", true, false)]);
    assert_eq!(states(&sac, "p-1"), vec![(b, false), (d, true)]);
    // The active one leaves: the next one takes over at once (nobody to wait for).
    assert_eq!(
        sac.unregister(&key("p-1"), d),
        vec![note(b, "p-1", true, false)]
    );
    assert_eq!(states(&sac, "p-1"), vec![(b, true)]);
}

#[test]
fn partition_zero_keeps_its_first_consumer() {
    let mut sac = SacCoordinator::new();
    let (a, b) = (c(1, 0), c(2, 0));
    sac.register(key("p-0"), Some(0), a);
    // 0 mod 2 = 0: a stays active.
    assert_eq!(sac.register(key("p-0"), Some(0), b), (false, vec![]));
    assert_eq!(states(&sac, "p-0"), vec![(a, true), (b, false)]);
    assert_eq!(sac.groups("/")[0].partition_index, Some(0));
}

#[test]
fn while_one_steps_down_nobody_else_is_activated() {
    let mut sac = SacCoordinator::new();
    let (a, b, d) = (c(1, 0), c(2, 0), c(3, 0));
    sac.register(key("p-1"), Some(1), a);
    sac.register(key("p-1"), Some(1), b); // a steps down
                                          // Another comes and a passive one goes while a has not answered: no one is told.
    assert_eq!(sac.register(key("p-1"), Some(1), d), (false, vec![]));
    assert_eq!(sac.unregister(&key("p-1"), d), vec![]);
    assert_eq!(sac.activate(&key("p-1")), vec![note(b, "p-1", true, false)]);
}

#[test]
fn a_closed_connection_leaves_every_group_it_was_in() {
    let mut sac = SacCoordinator::new();
    let (a1, a2, b1, b2) = (c(1, 0), c(1, 1), c(2, 0), c(2, 1));
    // Connection 1 is active on plain stream "s" and on partition 0; connection 2 waits.
    sac.register(key("s"), None, a1);
    sac.register(key("s"), None, b1);
    sac.register(key("p-0"), Some(0), a2);
    sac.register(key("p-0"), Some(0), b2);
    let mut notes = sac.connection_closed(1);
    notes.sort_by(|x, y| x.group.cmp(&y.group));
    assert_eq!(
        notes,
        vec![note(b2, "p-0", true, false), note(b1, "s", true, false)]
    );
    assert!(sac.is_active(&key("s"), b1));
    assert!(sac.is_active(&key("p-0"), b2));
    // Closing the last connection empties everything; closing it again is a no-op.
    sac.connection_closed(2);
    assert!(sac.groups("/").is_empty());
    assert_eq!(sac.connection_closed(2), vec![]);
}

#[test]
fn an_unsubscribed_connection_is_forgotten_only_when_it_has_no_consumer_left() {
    let mut sac = SacCoordinator::new();
    let (a1, a2, b) = (c(1, 0), c(1, 1), c(2, 0));
    sac.register(key("s"), None, a1);
    sac.register(key("s"), None, a2);
    sac.register(key("s"), None, b);
    sac.unregister(&key("s"), a1);
    assert!(sac.is_active(&key("s"), a2));
    // Connection 1 still has a2 in the group: its end still reaches it.
    assert_eq!(sac.connection_closed(1), vec![note(b, "s", true, false)]);
}

//! A vhost's default queue type (RabbitMQ 3.11+, vhost metadata `default_queue_type`; the
//! node's `default_queue_type` from the configuration file when the vhost sets none).
//!
//! RabbitMQ adds the default as `x-queue-type` to a `queue.declare` that names no type, and
//! only when the queue is durable, not exclusive and not auto-delete: those stay classic
//! (rabbit_amqqueue `augment_declare_args`, called by rabbit_channel's `queue.declare` and the
//! management API's `PUT /api/queues`; rabbitmq-server pull request 5305, "Configure default
//! queue type by vhost", keeps exclusive and transient queues classic, and adds the type so
//! that "future declares with and without the x-queue-type argument succeed"). The callers
//! apply it to a new queue and to a redeclare of a queue declared with a type; a queue
//! declared with none (before the default was set) is redeclared as it was, without an error.

use super::VHost;
use crate::value::{Table, Value};
use bytes::Bytes;

/// The queue types a vhost may default to.
pub const QUEUE_TYPES: &[&str] = &["classic", "quorum", "stream"];

impl VHost {
    /// The vhost's own default queue type, if set.
    pub fn default_queue_type(&self) -> Option<String> {
        self.info.read().default_queue_type.clone()
    }

    /// Adds the default queue type (the vhost's, else `node_default`) to the `arguments` of a
    /// declare of a new queue that names none, if it is durable, not exclusive and not
    /// auto-delete. A `classic` default adds nothing (classic is what no type means).
    pub fn apply_default_queue_type(
        &self,
        node_default: Option<&str>,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: &mut Table,
    ) {
        if !durable || exclusive || auto_delete || arguments.get("x-queue-type").is_some() {
            return;
        }
        let kind = self
            .default_queue_type()
            .or_else(|| node_default.map(str::to_string));
        match kind.as_deref() {
            None | Some("classic") => {}
            Some(kind) => arguments.0.insert(
                0,
                (
                    "x-queue-type".to_string(),
                    Value::Str(Bytes::from(kind.to_string())),
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::VHostInfo;

    #[test]
    fn only_durable_shared_queues_get_the_default() {
        let v = VHost::new("/");
        v.set_info(VHostInfo {
            default_queue_type: Some("quorum".into()),
            ..VHostInfo::default()
        });
        let typed = |durable, exclusive, auto_delete| {
            let mut args = Table::new();
            v.apply_default_queue_type(None, durable, exclusive, auto_delete, &mut args);
            args.get_str("x-queue-type").map(str::to_string)
        };
        assert_eq!(typed(true, false, false).as_deref(), Some("quorum"));
        assert_eq!(typed(false, false, false), None);
        assert_eq!(typed(true, true, false), None);
        assert_eq!(typed(true, false, true), None);
        let mut args = Table(vec![(
            "x-queue-type".into(),
            Value::Str(Bytes::from("classic")),
        )]);
        v.apply_default_queue_type(None, true, false, false, &mut args);
        assert_eq!(args.0.len(), 1, "a declared type is kept");
    }

    #[test]
    fn the_node_default_applies_when_the_vhost_sets_none() {
        let v = VHost::new("/");
        let mut args = Table::new();
        v.apply_default_queue_type(Some("quorum"), true, false, false, &mut args);
        assert_eq!(args.get_str("x-queue-type"), Some("quorum"));
        let mut args = Table::new();
        v.apply_default_queue_type(Some("classic"), true, false, false, &mut args);
        assert!(args.is_empty());
    }
}

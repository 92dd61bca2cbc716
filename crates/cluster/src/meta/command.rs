//! What the metadata group replicates: every change to the broker's definitions, as a command
//! applied in the same order on every node.
//!
//! The commands carry what RabbitMQ's definitions carry. Payloads the broker already encodes
//! (arguments tables, policy definitions, limits, parameter values) travel as [`Json`] text:
//! opaque here, parsed by the broker, so that a new argument or policy key needs no change to this
//! crate or to the log's format.

use serde::{Deserialize, Serialize};

/// A JSON document as text (an arguments table, a policy definition, a limit set...). Opaque to
/// the cluster: the broker writes and reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Json(pub String);

/// One change to the broker's metadata. The broker's [`super::MetadataApply`] applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MetaCommand {
    /// `rabbitmqctl add_vhost` (or a definitions import).
    AddVhost {
        /// The vhost.
        name: String,
        /// Description, tags, default queue type... as the broker encodes them.
        metadata: Json,
    },
    /// `rabbitmqctl delete_vhost`: the vhost and everything in it.
    DeleteVhost {
        /// The vhost.
        name: String,
    },
    /// A user created or changed (`add_user`, `change_password`, `set_user_tags`).
    PutUser {
        /// The user.
        name: String,
        /// RabbitMQ's salted hash, as stored (never a clear password in the log).
        password_hash: String,
        /// Tags (administrator, monitoring...).
        tags: Vec<String>,
    },
    /// `rabbitmqctl delete_user`.
    DeleteUser {
        /// The user.
        name: String,
    },
    /// `set_permissions`: configure, write and read patterns of a user in a vhost.
    SetPermissions {
        /// The user.
        user: String,
        /// The vhost.
        vhost: String,
        /// The configure pattern.
        configure: String,
        /// The write pattern.
        write: String,
        /// The read pattern.
        read: String,
    },
    /// `clear_permissions`.
    ClearPermissions {
        /// The user.
        user: String,
        /// The vhost.
        vhost: String,
    },
    /// `set_topic_permissions`.
    SetTopicPermissions {
        /// The user.
        user: String,
        /// The vhost.
        vhost: String,
        /// The topic exchange.
        exchange: String,
        /// The write pattern.
        write: String,
        /// The read pattern.
        read: String,
    },
    /// `clear_topic_permissions` (all exchanges when `exchange` is `None`).
    ClearTopicPermissions {
        /// The user.
        user: String,
        /// The vhost.
        vhost: String,
        /// The exchange, or every one.
        exchange: Option<String>,
    },
    /// `set_vhost_limits` / `set_user_limits` (an empty document clears them).
    SetLimits {
        /// Whose limits.
        scope: LimitScope,
        /// The limits.
        limits: Json,
    },
    /// `set_policy` / `set_operator_policy`.
    SetPolicy {
        /// The vhost.
        vhost: String,
        /// The policy's name.
        name: String,
        /// Pattern, apply-to, priority and definition.
        policy: Json,
        /// An operator policy rather than a user one.
        operator: bool,
    },
    /// `clear_policy` / `clear_operator_policy`.
    ClearPolicy {
        /// The vhost.
        vhost: String,
        /// The policy's name.
        name: String,
        /// An operator policy rather than a user one.
        operator: bool,
    },
    /// `set_parameter` (vhost-scoped, `vhost: Some`) or `set_global_parameter` (`None`).
    SetParameter {
        /// The vhost, or none for a global parameter.
        vhost: Option<String>,
        /// The component (`shovel`, `federation-upstream`...; empty for global ones).
        component: String,
        /// The parameter's name.
        name: String,
        /// Its value.
        value: Json,
    },
    /// `clear_parameter` / `clear_global_parameter`.
    ClearParameter {
        /// The vhost, or none for a global parameter.
        vhost: Option<String>,
        /// The component.
        component: String,
        /// The parameter's name.
        name: String,
    },
    /// `exchange.declare` of a durable exchange.
    DeclareExchange {
        /// The vhost.
        vhost: String,
        /// The exchange.
        name: String,
        /// direct, fanout, topic, headers, x-...
        kind: String,
        /// Deleted with its last binding.
        auto_delete: bool,
        /// Not publishable by clients.
        internal: bool,
        /// The arguments table.
        arguments: Json,
    },
    /// `exchange.delete`.
    DeleteExchange {
        /// The vhost.
        vhost: String,
        /// The exchange.
        name: String,
    },
    /// `queue.declare` of a durable queue. Exclusive and non-durable queues belong to their
    /// connection's node and are never replicated (issue 13, item 2).
    DeclareQueue {
        /// The vhost.
        vhost: String,
        /// The queue.
        name: String,
        /// classic, quorum or stream.
        kind: String,
        /// Deleted when its last consumer goes.
        auto_delete: bool,
        /// The arguments table.
        arguments: Json,
        /// The node the queue lives on (a classic queue's home; a quorum queue's first leader).
        node: String,
    },
    /// `queue.delete`.
    DeleteQueue {
        /// The vhost.
        vhost: String,
        /// The queue.
        name: String,
    },
    /// `queue.bind` / `exchange.bind` with a durable source and destination.
    Bind {
        /// The binding.
        binding: Binding,
    },
    /// `queue.unbind` / `exchange.unbind`.
    Unbind {
        /// The binding.
        binding: Binding,
    },
    /// An MQTT persistent session's subscription (clean session 0 / session expiry > 0).
    MqttSubscribe {
        /// The vhost.
        vhost: String,
        /// The MQTT client identifier.
        client_id: String,
        /// The topic filter.
        filter: String,
        /// QoS and the MQTT 5 subscription options, as the broker encodes them.
        options: Json,
    },
    /// An MQTT persistent session's subscription removed.
    MqttUnsubscribe {
        /// The vhost.
        vhost: String,
        /// The MQTT client identifier.
        client_id: String,
        /// The topic filter.
        filter: String,
    },
    /// An MQTT persistent session ended (clean start, expiry): all its subscriptions go.
    MqttDropSession {
        /// The vhost.
        vhost: String,
        /// The MQTT client identifier.
        client_id: String,
    },
    // Automatic deletions (meta2): proposed by the node where they happened, applied by the
    // others only where the entity is unused there too.
    /// An auto-delete durable queue lost its last consumer on the proposing node: deleted on
    /// every node where it has no consumer.
    AutoDeleteQueue {
        /// The vhost.
        vhost: String,
        /// The queue.
        name: String,
    },
    /// An auto-delete durable exchange lost its last binding on the proposing node: deleted on
    /// every node where it has no binding left.
    AutoDeleteExchange {
        /// The vhost.
        vhost: String,
        /// The exchange.
        name: String,
    },
    // Written once per cluster, and in batches (metafinish): the first start's set-up and a
    // definitions import's entities.
    /// The cluster's first-start set-up: the default vhost, the default user and its
    /// permissions (RabbitMQ seeds them once, on the first node of a new cluster). Every node
    /// proposes it after the cluster formed; only the first one committed is applied (each of
    /// its commands only where the entity is absent), the later ones change nothing, so a
    /// default user deleted cluster-wide is never created again. With no commands, it only
    /// records that the set-up happened (a snapshot carries it so).
    Bootstrap {
        /// The set-up's commands (`AddVhost`, `PutUser`, `SetPermissions`).
        commands: Vec<MetaCommand>,
    },
    /// Several commands in one log entry, applied in order with each one's own checks; the
    /// first one refused stops the rest (a definitions import stops at its first refusal).
    Batch {
        /// The commands.
        commands: Vec<MetaCommand>,
    },
    // Quorum queue membership (quorummembers): `add_member`, `delete_member`, `grow`, `shrink`.
    /// A quorum queue's members changed (its Raft group's voters): the node names,
    /// comma-separated, as `DeclareQueue`'s `node` gives them at declaration. A node added
    /// starts its member (which the group's leader then adds as a learner, then a voter); a
    /// node removed stops its own.
    SetQueueMembers {
        /// The vhost.
        vhost: String,
        /// The queue.
        name: String,
        /// The members, comma-separated.
        members: String,
    },
}

/// Whose limits a [`MetaCommand::SetLimits`] sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitScope {
    /// A vhost's (max-connections, max-queues).
    Vhost(String),
    /// A user's (max-connections, max-channels).
    User(String),
}

/// A binding from an exchange to a queue or an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The vhost.
    pub vhost: String,
    /// The source exchange.
    pub source: String,
    /// The destination queue or exchange.
    pub destination: String,
    /// True when the destination is an exchange.
    pub to_exchange: bool,
    /// The routing key.
    pub routing_key: String,
    /// The arguments table.
    pub arguments: Json,
}

/// What applying a command answered. The same on every node (application is deterministic), and
/// returned to the client that proposed the command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    /// Applied.
    #[default]
    Done,
    /// Refused by the broker's rules (e.g. a redeclare with different arguments): nothing changed.
    /// The code is the protocol's reply code the broker chose (AMQP 406, 404...).
    Refused {
        /// The reply code.
        code: u16,
        /// The reply text.
        text: String,
    },
}

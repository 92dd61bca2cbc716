//! Policies and operator policies through the management HTTP API, as RabbitMQ 3.13's
//! management plugin answers them: the same paths, JSON, status codes and validation errors,
//! the user tags that may see and change them (runtime and global parameters included), their
//! effect on real queues (driven with lapin) and their persistence across a restart. Every
//! call goes through a real HTTP client (reqwest). Parameters and definitions:
//! `http_parameters.rs`.

use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, DataDir, TestBroker};
use serde_json::{json, Value};

async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig::for_tests()).await
}

/// Declares `name` (durable) with `args` and publishes `n` confirmed messages to it; returns
/// how many it holds then.
async fn fill(channel: &Channel, name: &str, args: FieldTable, n: usize) -> u32 {
    channel
        .queue_declare(
            name.into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    for i in 0..n {
        lp::publish(channel, "", name, format!("m{i}").as_bytes()).await;
    }
    lp::message_count(channel, name).await
}

fn max_length_arg(n: i32) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-max-length".into(), AMQPValue::LongInt(n));
    t
}

/// Creates `user` (password "pw") with `tags`, and full permissions in `/` when `in_root`.
async fn user(api: &Api, tags: &str, in_root: bool) -> String {
    let name = unique(&tags.replace(',', "-"));
    let a = api
        .put(
            &format!("/api/users/{name}"),
            json!({"password": "pw", "tags": tags}),
        )
        .await;
    assert_eq!(a.status, 201);
    if in_root {
        let a = api
            .put(
                &format!("/api/permissions/%2F/{name}"),
                json!({"configure": ".*", "write": ".*", "read": ".*"}),
            )
            .await;
        assert!(a.status == 201 || a.status == 204, "{a:?}");
    }
    name
}

#[tokio::test]
async fn a_policy_is_set_shown_listed_applied_and_cleared_with_rabbitmq_json() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let path = "/api/policies/%2F/short";
    let body = json!({"pattern": "^short\\.", "definition": {"max-length": 2},
                      "priority": 3, "apply-to": "queues"});
    assert_eq!(api.put(path, body.clone()).await.status, 201);
    assert_eq!(
        api.put(path, body).await.status,
        204,
        "a second PUT replaces"
    );
    let expected = json!({"vhost": "/", "name": "short", "pattern": "^short\\.",
                          "apply-to": "queues", "definition": {"max-length": 2}, "priority": 3});
    let shown = api.get(path).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body, expected);
    assert_eq!(api.get("/api/policies").await.body, json!([expected]));
    assert_eq!(api.get("/api/policies/%2F").await.body, json!([expected]));
    assert_eq!(api.get("/api/policies/nowhere").await.status, 404);

    // The policy applies to a queue a real client declares: 5 published, 2 kept.
    let (_conn, channel) = lp::confirm_connection(&broker).await;
    assert_eq!(fill(&channel, "short.q", FieldTable::default(), 5).await, 2);
    let q = api.get("/api/queues/%2F/short.q").await.body;
    assert_eq!(q["policy"], "short");
    assert_eq!(q["operator_policy"], Value::Null);
    assert_eq!(q["effective_policy_definition"], json!({"max-length": 2}));

    // Defaults: priority 0, apply-to all.
    let a = api
        .put(
            "/api/policies/%2F/ae",
            json!({"pattern": "^x$", "definition": {"alternate-exchange": "amq.fanout"}}),
        )
        .await;
    assert_eq!(a.status, 201);
    let ae = api.get("/api/policies/%2F/ae").await.body;
    assert_eq!(
        (ae["priority"].clone(), ae["apply-to"].clone()),
        (json!(0), json!("all"))
    );

    assert_eq!(api.delete(path).await.status, 204);
    assert_eq!(api.get(path).await.status, 404);
    assert_eq!(api.delete(path).await.status, 404);
    // Cleared: the limit is lifted at once.
    assert_eq!(fill(&channel, "short.q", FieldTable::default(), 3).await, 5);
    assert_eq!(
        api.get("/api/queues/%2F/short.q").await.body["policy"],
        Value::Null
    );
}

#[tokio::test]
async fn the_operator_policy_caps_the_policy_and_the_declare_arguments() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let a = api
        .put(
            "/api/policies/%2F/generous",
            json!({"pattern": "^capped", "definition": {"max-length": 10, "message-ttl": 60000}}),
        )
        .await;
    assert_eq!(a.status, 201);
    let op = json!({"pattern": "^capped", "definition": {"max-length": 3, "message-ttl": 600000},
                    "priority": 1, "apply-to": "queues"});
    assert_eq!(
        api.put("/api/operator-policies/%2F/cap", op).await.status,
        201
    );
    assert_eq!(
        api.get("/api/operator-policies/%2F/cap").await.body,
        json!({"vhost": "/", "name": "cap", "pattern": "^capped", "apply-to": "queues",
               "definition": {"max-length": 3, "message-ttl": 600000}, "priority": 1})
    );
    assert_eq!(
        api.get("/api/operator-policies").await.body[0]["name"],
        "cap"
    );
    // RabbitMQ lists operator policies among the runtime parameters.
    let params = api.get("/api/parameters/operator_policy").await.body;
    assert_eq!(params[0]["value"]["definition"]["max-length"], 3);

    let (_conn, channel) = lp::confirm_connection(&broker).await;
    // The lower value wins: 3 from the operator policy over the policy's 10.
    assert_eq!(
        fill(&channel, "capped.a", FieldTable::default(), 5).await,
        3
    );
    let q = api.get("/api/queues/%2F/capped.a").await.body;
    assert_eq!(q["policy"], "generous");
    assert_eq!(q["operator_policy"], "cap");
    assert_eq!(
        q["effective_policy_definition"],
        json!({"max-length": 3, "message-ttl": 60000})
    );
    // It caps a declare argument too (RabbitMQ's res_min over argument and policies).
    assert_eq!(fill(&channel, "capped.b", max_length_arg(100), 5).await, 3);
    // A lower argument stays.
    assert_eq!(fill(&channel, "capped.c", max_length_arg(1), 5).await, 1);

    // Operator policies take the capping keys only.
    let a = api
        .put(
            "/api/operator-policies/%2F/bad",
            json!({"pattern": ".*", "definition": {"dead-letter-exchange": "dlx"}}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.body["reason"]
            .as_str()
            .unwrap()
            .contains("not recognised"),
        "{a:?}"
    );

    assert_eq!(
        api.delete("/api/operator-policies/%2F/cap").await.status,
        204
    );
    assert_eq!(
        fill(&channel, "capped.a", FieldTable::default(), 10).await,
        10
    );
}

#[tokio::test]
async fn bad_policies_get_400_with_rabbitmq_validation_errors_and_change_nothing() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let path = "/api/policies/%2F/bad";
    let cases = [
        (
            json!({"pattern": ".*", "definition": {"no-such-key": 1}}),
            "not recognised policy settings",
        ),
        (
            json!({"pattern": "(", "definition": {"max-length": 1}}),
            "regular expression",
        ),
        (
            json!({"pattern": ".*", "definition": {"max-length": 1}, "priority": "high"}),
            "priority",
        ),
        (
            json!({"pattern": ".*", "definition": {"max-length": 1}, "apply-to": "streams-of-thought"}),
            "apply-to",
        ),
        (
            json!({"pattern": ".*", "definition": {"max-length": "x"}}),
            "is not a valid maximum length",
        ),
        (
            json!({"pattern": ".*", "definition": {"expires": 0}}),
            "is not a valid queue expiry",
        ),
        (
            json!({"pattern": ".*", "definition": {}}),
            "no policy provided",
        ),
        (
            json!({"pattern": ".*", "definition": 5}),
            "definition must be a dictionary",
        ),
    ];
    for (body, why) in cases {
        let a = api.put(path, body.clone()).await;
        assert_eq!(a.status, 400, "{body}");
        assert_eq!(a.body["error"], "bad_request");
        let reason = a.body["reason"].as_str().unwrap();
        assert!(reason.starts_with("Validation failed\n\n"), "{reason:?}");
        assert!(reason.contains(why), "{body}: {reason:?}");
    }
    assert_eq!(
        api.put(path, json!({"definition": {"max-length": 1}}))
            .await
            .status,
        400,
        "no pattern"
    );
    assert_eq!(
        api.raw("PUT", path, Some(b"{not json".to_vec()))
            .await
            .status,
        400
    );
    assert_eq!(api.get(path).await.status, 404);
    assert_eq!(api.get("/api/policies").await.body, json!([]));
    // A policy in a vhost that does not exist: 404.
    let a = api
        .put(
            "/api/policies/nowhere/p",
            json!({"pattern": ".*", "definition": {"max-length": 1}}),
        )
        .await;
    assert_eq!(a.status, 404);
    // Keys RabbitMQ knows but Pigeon does not act on (classic mirroring) are kept.
    let a = api
        .put(
            "/api/policies/%2F/ha",
            json!({"pattern": ".*", "definition": {"ha-mode": "all", "ha-sync-mode": "automatic"}}),
        )
        .await;
    assert_eq!(a.status, 201);
}

#[tokio::test]
async fn tags_decide_who_sees_and_changes_policies_and_parameters() {
    let Some(broker) = broker().await else { return };
    let admin = Api::new(&broker);
    let body = json!({"pattern": "^t", "definition": {"max-length": 5}});
    assert_eq!(
        admin.put("/api/policies/%2F/p", body.clone()).await.status,
        201
    );
    let management = user(&admin, "management", true).await;
    let maker = user(&admin, "policymaker", true).await;
    let outsider = user(&admin, "policymaker", false).await;
    let monitor = user(&admin, "monitoring", false).await;
    let as_ = |name: &str| admin.with_user(name, "pw");

    // management: lists the policies of its vhosts, nothing more.
    let m = as_(&management);
    assert_eq!(m.get("/api/policies").await.body[0]["name"], "p");
    assert_eq!(m.get("/api/policies/%2F").await.status, 200);
    assert_eq!(m.get("/api/policies/%2F/p").await.status, 401);
    assert_eq!(m.put("/api/policies/%2F/q", body.clone()).await.status, 401);
    assert_eq!(m.get("/api/parameters").await.status, 401);
    assert_eq!(m.get("/api/global-parameters").await.status, 401);
    assert_eq!(m.get("/api/operator-policies").await.status, 401);

    // policymaker: policies and parameters of the vhosts it has access to.
    let pm = as_(&maker);
    assert_eq!(pm.get("/api/policies/%2F/p").await.status, 200);
    assert_eq!(
        pm.put("/api/policies/%2F/q", body.clone()).await.status,
        201
    );
    assert_eq!(pm.delete("/api/policies/%2F/q").await.status, 204);
    let param = json!({"value": {"uri": "amqp://upstream"}});
    assert_eq!(
        pm.put("/api/parameters/federation-upstream/%2F/up", param.clone())
            .await
            .status,
        201
    );
    assert_eq!(pm.get("/api/parameters").await.body[0]["name"], "up");
    assert_eq!(pm.get("/api/global-parameters").await.status, 200);
    // ... but not operator policies (administrators only).
    assert_eq!(
        pm.put("/api/operator-policies/%2F/o", body.clone())
            .await
            .status,
        401
    );
    assert_eq!(pm.get("/api/operator-policies").await.status, 401);

    // A policymaker without access to the vhost.
    let out = as_(&outsider);
    let a = out.put("/api/policies/%2F/q", body.clone()).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["reason"], "User not authorised to access object");
    assert_eq!(
        out.put("/api/parameters/federation-upstream/%2F/up2", param)
            .await
            .status,
        401
    );
    assert_eq!(out.get("/api/policies").await.body, json!([]));

    // monitoring: sees every vhost's policy list, changes nothing.
    let mon = as_(&monitor);
    assert_eq!(mon.get("/api/policies").await.body[0]["name"], "p");
    assert_eq!(
        mon.put("/api/policies/%2F/q", body.clone()).await.status,
        401
    );
    assert_eq!(mon.delete("/api/policies/%2F/p").await.status, 401);

    // administrator: everything, operator policies included.
    assert_eq!(
        admin.put("/api/operator-policies/%2F/o", body).await.status,
        201
    );
    assert_eq!(admin.get("/api/policies/%2F/p").await.status, 200);
}

#[tokio::test]
async fn policies_parameters_and_the_cluster_name_survive_a_restart() {
    let data = DataDir::with(|c| c.fsync = true);
    let Some(broker) = data.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let policy = json!({"vhost": "/", "name": "two", "pattern": "^kept", "apply-to": "all",
                        "definition": {"max-length": 2}, "priority": 0});
    assert_eq!(
        api.put("/api/policies/%2F/two", policy.clone())
            .await
            .status,
        201
    );
    let op = json!({"pattern": "^kept", "definition": {"message-ttl": 3600000}});
    assert_eq!(
        api.put("/api/operator-policies/%2F/ttl", op).await.status,
        201
    );
    let param = json!({"value": {"uri": "amqp://up"}});
    assert_eq!(
        api.put("/api/parameters/federation-upstream/%2F/up", param)
            .await
            .status,
        201
    );
    assert_eq!(
        api.put("/api/cluster-name", json!({"name": "kept-cluster"}))
            .await
            .status,
        204
    );
    // A vhost deleted with its policies and parameters: nothing of it comes back.
    assert_eq!(api.put("/api/vhosts/gone", json!({})).await.status, 201);
    let gone = json!({"pattern": ".*", "definition": {"max-length": 1}});
    assert_eq!(api.put("/api/policies/gone/p", gone).await.status, 201);
    assert_eq!(
        api.put("/api/parameters/shovel/gone/s", json!({"value": 1}))
            .await
            .status,
        201
    );
    assert_eq!(api.delete("/api/vhosts/gone").await.status, 204);
    {
        let (_conn, channel) = lp::confirm_connection(&broker).await;
        assert_eq!(
            fill(&channel, "kept.before", FieldTable::default(), 5).await,
            2
        );
    }

    let broker = data.restart(broker).await;
    let api = Api::new(&broker);
    assert_eq!(api.get("/api/policies/%2F/two").await.body, policy);
    assert_eq!(
        api.get("/api/operator-policies/%2F/ttl").await.body["definition"],
        json!({"message-ttl": 3600000})
    );
    assert_eq!(
        api.get("/api/parameters/federation-upstream/%2F/up")
            .await
            .body["value"],
        json!({"uri": "amqp://up"})
    );
    assert_eq!(
        api.get("/api/cluster-name").await.body["name"],
        "kept-cluster"
    );
    assert_eq!(api.put("/api/vhosts/gone", json!({})).await.status, 201);
    assert_eq!(api.get("/api/policies/gone").await.body, json!([]));
    assert_eq!(api.get("/api/parameters/shovel").await.body, json!([]));

    // The recovered queue keeps its policy; a new one gets it too.
    let (_conn, channel) = lp::confirm_connection(&broker).await;
    assert_eq!(
        fill(&channel, "kept.before", FieldTable::default(), 3).await,
        2
    );
    assert_eq!(
        fill(&channel, "kept.after", FieldTable::default(), 5).await,
        2
    );
    let q = api.get("/api/queues/%2F/kept.after").await.body;
    assert_eq!(
        (q["policy"].clone(), q["operator_policy"].clone()),
        (json!("two"), json!("ttl"))
    );
}

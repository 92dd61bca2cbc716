//! Tests of the report's text and JSON.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::stamp::Stamp;
use crate::tally::{summarize, Tally};

fn outcome_with(received: &[u64], sent: u64) -> Outcome {
    let mut tally = Tally::new(1);
    for &seq in received {
        let mut body = [0; Stamp::LEN];
        Stamp {
            sent_ns: 0,
            producer: 0,
            seq,
        }
        .write_to(&mut body);
        tally.record(&body, 2_000_000_000);
    }
    Outcome {
        sent: vec![sent],
        acked: 0,
        nacked: 0,
        confirm_latency_us: None,
        publish_ns: 1_000_000_000,
        confirm_ns: 1_000_000_000,
        max_ack_gap: None,
        epoch_unix_ms: 1_000_000,
        delivered: Some(summarize(vec![tally], &[sent], Sharing::Competing)),
        ending: Ending::Completed,
        errors: vec![],
    }
}

fn report(outcome: &Outcome) -> Report {
    let info = RunInfo {
        protocol: "mqtt",
        client: "raw",
        url: "mqtt://127.0.0.1:1883".into(),
        settings: Settings::Mqtt(MqttSettings {
            mqtt_version: "3.1.1",
            qos: 1,
            inflight: Some(10),
            publishers: 1,
            subscribers: 1,
            topics: 1,
            size: 16,
            duration_s: None,
            count: Some(3),
            rate: 0,
        }),
        confirm: true,
        sharing: Sharing::Competing,
    };
    Report::new(info, outcome, Duration::from_secs(2), None)
}

#[test]
fn every_message_once_passes() {
    let r = report(&outcome_with(&[0, 1, 2], 3));
    assert!(r.passed());
    assert_eq!(r.published_per_s, 3.0);
    assert_eq!(r.consumed_per_s, Some(1.5));
}

#[test]
fn a_lost_or_repeated_message_fails_and_shows_in_json() {
    let lost = report(&outcome_with(&[0, 2], 3));
    assert!(!lost.passed());
    let json: serde_json::Value = serde_json::from_str(&lost.to_json()).unwrap();
    assert_eq!(json["lost"], 1);
    let max = json["latency_us"]["max"].as_u64().unwrap();
    assert!(
        (2_000_000..=2_002_000).contains(&max),
        "2 s in microseconds, 3 digits: {max}"
    );

    let dup = report(&outcome_with(&[0, 1, 1, 2], 3));
    assert!(!dup.passed());
    assert_eq!(dup.duplicates, Some(1));
}

#[test]
fn confirm_latency_shows_only_when_measured() {
    let without = report(&outcome_with(&[0, 1, 2], 3));
    let json: serde_json::Value = serde_json::from_str(&without.to_json()).unwrap();
    assert!(json["confirm_latency_us"].is_null(), "{json}");
    assert!(!without.to_string().contains("confirms   p50"));

    let mut outcome = outcome_with(&[0, 1, 2], 3);
    outcome.acked = 3;
    let mut h = crate::tally::latency_histogram();
    for us in [100, 200, 300] {
        h.record(us).unwrap();
    }
    outcome.confirm_latency_us = Some(h);
    let with = report(&outcome);
    let json: serde_json::Value = serde_json::from_str(&with.to_json()).unwrap();
    let confirms = &json["confirm_latency_us"];
    assert_eq!(confirms["samples"], 3);
    assert_eq!(confirms["p50"], 200);
    assert_eq!(confirms["max"], 300);
    for key in ["p95", "p99", "mean"] {
        assert!(confirms.get(key).is_some(), "{key} in {confirms}");
    }
    let text = with.to_string();
    assert!(text.contains("confirms   p50 200 us"), "{text}");
    assert!(json["max_confirm_gap"].is_null(), "{json}");

    outcome.max_ack_gap = Some(AckGap {
        gap_ns: 2_500_000_000,
        end_ns: 4_000_000_000,
    });
    let json: serde_json::Value = serde_json::from_str(&report(&outcome).to_json()).unwrap();
    let gap = &json["max_confirm_gap"];
    assert_eq!(gap["ms"], 2500.0);
    assert_eq!(gap["to_unix_ms"], 1_004_000);
    assert_eq!(gap["from_unix_ms"], 1_001_500);
}

#[test]
fn text_report_names_the_settings_and_the_client() {
    let text = report(&outcome_with(&[0, 1, 2], 3)).to_string();
    assert!(text.contains("(raw client)"), "{text}");
    assert!(text.contains("MQTT 3.1.1, QoS 1 (in-flight 10)"), "{text}");
    assert!(text.contains("lost 0  duplicates 0"), "{text}");
    assert!(text.ends_with("ended: completed"), "{text}");
}

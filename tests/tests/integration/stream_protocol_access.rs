//! Who may do what over the Stream protocol: vhost access at `Open`, configure, write and
//! read permissions per stream (RabbitMQ's codes), and heartbeats.

use crate::stream_protocol_support;

use bytes::Bytes;
use pigeon_broker::permission::Permission;
use stream_protocol_support::{broker, Raw};
use stream_wire::{
    Command, Create, DeclarePublisher, Open, PeerProperties, QueryOffset, ResponseCode,
    SaslAuthenticate, Subscribe, TuneResponse,
};

/// Logs in as `user` (password `pw`) and opens `/`; the answer to Open.
async fn login(raw: &mut Raw, user: &str) -> ResponseCode {
    raw.send(PeerProperties {
        correlation_id: 1,
        properties: Default::default(),
    })
    .await;
    raw.recv().await.unwrap();
    raw.send(SaslAuthenticate {
        correlation_id: 2,
        mechanism: "PLAIN".into(),
        data: Some(Bytes::from(format!("\0{user}\0pw"))),
    })
    .await;
    assert!(
        matches!(raw.recv().await, Some(Command::SaslAuthenticateResponse(r)) if r.code.is_ok())
    );
    assert!(matches!(raw.recv().await, Some(Command::Tune(_))));
    raw.send(TuneResponse {
        frame_max: 1_048_576,
        heartbeat: 0,
    })
    .await;
    raw.send(Open {
        correlation_id: 3,
        virtual_host: "/".into(),
    })
    .await;
    match raw.recv().await {
        Some(Command::OpenResponse(r)) => r.code,
        other => panic!("expected Open's answer, got {other:?}"),
    }
}

/// The code of the plain response that comes next.
async fn code(raw: &mut Raw) -> ResponseCode {
    match raw.recv().await {
        Some(Command::Response(r)) => r.code,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[tokio::test]
async fn a_user_without_permissions_in_the_vhost_is_refused_at_open() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let access = broker.server().unwrap().broker().access();
    access.add_user("nobody", Some("pw"), Vec::new()).unwrap();
    let mut raw = Raw::connect(broker.stream_addr().unwrap()).await;
    assert_eq!(
        login(&mut raw, "nobody").await,
        ResponseCode::VirtualHostAccessFailure
    );
    assert!(raw.until_closed().await.is_empty());
}

#[tokio::test]
async fn configure_write_and_read_permissions_are_checked_per_stream() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let access = broker.server().unwrap().broker().access();
    access.add_user("reader", Some("pw"), Vec::new()).unwrap();
    access.set_permission(
        "reader",
        "/",
        Permission {
            configure: "^mine-.*".into(),
            write: "^mine-.*".into(),
            read: ".*".into(),
        },
    );
    let theirs = pigeon_tests::unique("theirs");
    let mut admin = Raw::open(broker.stream_addr().unwrap()).await;
    admin
        .send(Create {
            correlation_id: 1,
            stream: theirs.as_str().into(),
            arguments: Default::default(),
        })
        .await;
    assert_eq!(code(&mut admin).await, ResponseCode::Ok);

    let mut raw = Raw::connect(broker.stream_addr().unwrap()).await;
    assert_eq!(login(&mut raw, "reader").await, ResponseCode::Ok);
    // Configure: Create refused outside `mine-`, allowed inside.
    raw.send(Create {
        correlation_id: 4,
        stream: "other-stream".into(),
        arguments: Default::default(),
    })
    .await;
    assert_eq!(code(&mut raw).await, ResponseCode::AccessRefused);
    let mine = format!("mine-{}", pigeon_tests::unique("s"));
    raw.send(Create {
        correlation_id: 5,
        stream: mine.as_str().into(),
        arguments: Default::default(),
    })
    .await;
    assert_eq!(code(&mut raw).await, ResponseCode::Ok);
    // Write: no publisher on their stream.
    raw.send(DeclarePublisher {
        correlation_id: 6,
        publisher_id: 0,
        reference: "".into(),
        stream: theirs.as_str().into(),
    })
    .await;
    assert_eq!(code(&mut raw).await, ResponseCode::AccessRefused);
    // Read: subscribing to it and querying offsets are allowed.
    raw.send(Subscribe {
        correlation_id: 7,
        subscription_id: 0,
        stream: theirs.as_str().into(),
        offset: stream_wire::OffsetSpec::First,
        credit: 1,
        properties: Default::default(),
    })
    .await;
    assert_eq!(code(&mut raw).await, ResponseCode::Ok);
    raw.send(QueryOffset {
        correlation_id: 8,
        reference: "r".into(),
        stream: theirs.as_str().into(),
    })
    .await;
    match raw.recv().await {
        Some(Command::QueryOffsetResponse(r)) => assert_eq!(r.code, ResponseCode::NoOffset),
        other => panic!("expected QueryOffset's answer, got {other:?}"),
    }
}

#[tokio::test]
async fn heartbeats_go_out_and_a_silent_client_is_closed() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let mut raw = Raw::connect(broker.stream_addr().unwrap()).await;
    raw.send(SaslAuthenticate {
        correlation_id: 2,
        mechanism: "PLAIN".into(),
        data: Some(Bytes::from_static(b"\0guest\0guest")),
    })
    .await;
    assert!(
        matches!(raw.recv().await, Some(Command::SaslAuthenticateResponse(r)) if r.code.is_ok())
    );
    assert!(matches!(raw.recv().await, Some(Command::Tune(_))));
    // One second: the broker sends heartbeats while it has nothing else to say, and closes
    // the socket after two silent periods.
    raw.send(TuneResponse {
        frame_max: 1_048_576,
        heartbeat: 1,
    })
    .await;
    raw.send(Open {
        correlation_id: 3,
        virtual_host: "/".into(),
    })
    .await;
    assert!(matches!(raw.recv().await, Some(Command::OpenResponse(r)) if r.code.is_ok()));
    let rest = raw.until_closed().await;
    assert!(
        rest.iter().any(|c| matches!(c, Command::Heartbeat(_))),
        "{rest:?}"
    );
}

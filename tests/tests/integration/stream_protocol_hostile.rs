//! Hostile input on the stream port over a raw socket: commands before `Open`, lying lengths,
//! huge frames, unknown keys. The broker answers or closes as RabbitMQ does, and keeps
//! serving everyone else.

use crate::stream_protocol_support;

use stream_protocol_support::{broker, env, new_stream, Raw};
use stream_wire::{Command, Create, PeerProperties, ResponseCode};

/// A complete handshake still works: the broker survived.
async fn still_serving(broker: &pigeon_tests::TestBroker) {
    let env = env(broker).await;
    new_stream(&env).await;
}

#[tokio::test]
async fn a_command_before_open_closes_the_socket_unanswered() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let mut raw = Raw::connect(broker.stream_addr().unwrap()).await;
    raw.send(Create {
        correlation_id: 1,
        stream: "sneaky".into(),
        arguments: Default::default(),
    })
    .await;
    assert!(raw.until_closed().await.is_empty());
    let vhost = broker.server().unwrap().broker().vhost("/").unwrap();
    assert!(vhost.queue("sneaky").is_err());
    still_serving(&broker).await;
}

#[tokio::test]
async fn a_lying_length_before_open_closes_the_socket() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let mut raw = Raw::connect(broker.stream_addr().unwrap()).await;
    // PeerProperties announcing 1000 entries in a frame that holds none.
    let mut frame = Command::from(PeerProperties {
        correlation_id: 1,
        properties: Default::default(),
    })
    .to_bytes()
    .to_vec();
    let n = frame.len();
    frame[n - 4..].copy_from_slice(&1000u32.to_be_bytes());
    raw.send_bytes(&frame).await;
    assert!(raw.until_closed().await.is_empty());
    still_serving(&broker).await;
}

#[tokio::test]
async fn a_huge_frame_is_refused_from_its_size() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    // Before Open: over the 8 KiB initial limit, the socket closes.
    let mut raw = Raw::connect(broker.stream_addr().unwrap()).await;
    raw.send_bytes(&[0x7f, 0xff, 0xff, 0xff, 0x00, 0x11, 0x00, 0x01])
        .await;
    assert!(raw.until_closed().await.is_empty());
    // After Open: over `max_message_size` (above the negotiated maximum), Close with
    // FRAME_TOO_LARGE (0x0e).
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    raw.send_bytes(&[0x7f, 0xff, 0xff, 0xff, 0x00, 0x02, 0x00, 0x01])
        .await;
    match raw.recv().await {
        Some(Command::Close(c)) => assert_eq!(c.code, ResponseCode::FrameTooLarge),
        other => panic!("expected Close, got {other:?}"),
    }
    still_serving(&broker).await;
}

#[tokio::test]
async fn an_unknown_key_after_open_gets_close_unknown_frame() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    raw.send_bytes(&[0, 0, 0, 6, 0x07, 0x77, 0, 1, 0xde, 0xad])
        .await;
    match raw.recv().await {
        Some(Command::Close(c)) => {
            assert_eq!(c.code, ResponseCode::UnknownFrame);
            // The client answers; then the broker closes the socket.
            raw.send(Command::Response(stream_wire::Response::new(
                stream_wire::key::CLOSE,
                c.correlation_id,
                ResponseCode::Ok,
            )))
            .await;
            assert!(raw.until_closed().await.is_empty());
        }
        other => panic!("expected Close, got {other:?}"),
    }
    still_serving(&broker).await;
}

#[tokio::test]
async fn a_wrong_password_is_answered_then_closed() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let mut raw = Raw::connect(broker.stream_addr().unwrap()).await;
    raw.send(stream_wire::SaslAuthenticate {
        correlation_id: 3,
        mechanism: "PLAIN".into(),
        data: Some(bytes::Bytes::from_static(b"\0guest\0nope")),
    })
    .await;
    match raw.until_closed().await.as_slice() {
        [Command::SaslAuthenticateResponse(r)] => {
            assert_eq!(r.code, ResponseCode::AuthenticationFailure)
        }
        other => panic!("expected one SaslAuthenticate response, got {other:?}"),
    }
    still_serving(&broker).await;
}

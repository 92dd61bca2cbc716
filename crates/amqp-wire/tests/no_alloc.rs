//! The hot path does not allocate: decoding basic.publish, its content header and body, and
//! basic.ack, once the connection's read buffer is in use.
//!
//! A counting global allocator counts allocations made by the current thread only, so the other
//! test of this binary, running on another thread, does not disturb it.
//!
//! `unsafe` is allowed in this one test binary, and only here: a global allocator cannot be
//! written without it. It forwards to `System` unchanged. The library itself stays unsafe-free.

#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use amqp_wire::*;
use bytes::BytesMut;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn publish_path_decodes_without_allocating() {
    let props = BasicProperties {
        content_type: Some("application/json".into()),
        delivery_mode: Some(2),
        expiration: Some("60000".into()),
        ..Default::default()
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // The first frame promotes the buffer to a shared one (one allocation in `bytes`, once per
    // buffer); a connection does that once, so it is not counted.
    encode_heartbeat(&mut buf);
    let publish = BasicPublish {
        exchange: "amq.topic".into(),
        routing_key: "a.b.c".into(),
        ..Default::default()
    };
    encode_method_frame(1, &publish.into(), &mut buf);
    encode_header_frame(1, 60, 5, &props.to_bytes(), &mut buf);
    encode_body_frames(1, b"hello", 131_072, &mut buf);
    encode_method_frame(
        1,
        &BasicAck {
            delivery_tag: 1,
            multiple: false,
        }
        .into(),
        &mut buf,
    );
    assert!(matches!(
        decode_frame(&mut buf, 131_072),
        Ok(Some(Frame::Heartbeat { .. }))
    ));

    let before = allocations();
    let publish = decode_frame(&mut buf, 131_072).unwrap().unwrap();
    let header = decode_frame(&mut buf, 131_072).unwrap().unwrap();
    let body = decode_frame(&mut buf, 131_072).unwrap().unwrap();
    let ack = decode_frame(&mut buf, 131_072).unwrap().unwrap();
    let Frame::Header { properties, .. } = &header else {
        panic!("not a header: {header:?}");
    };
    let decoded_props = BasicProperties::decode(properties).unwrap();
    let after = allocations();

    assert_eq!(after - before, 0, "allocations while decoding");
    assert!(matches!(
        publish,
        Frame::Method {
            method: Method::BasicPublish(_),
            ..
        }
    ));
    assert!(matches!(body, Frame::Body { .. }));
    assert!(matches!(
        ack,
        Frame::Method {
            method: Method::BasicAck(_),
            ..
        }
    ));
    assert_eq!(decoded_props, props);
}

#[test]
fn encoding_a_method_frame_reserves_once() {
    let mut arguments = FieldTable::new();
    arguments.insert("x-message-ttl", FieldValue::I32(1000));
    arguments.insert("x-queue-type", FieldValue::LongString("classic".into()));
    let declare: Method = QueueDeclare {
        queue: "orders".into(),
        durable: true,
        arguments,
        ..Default::default()
    }
    .into();
    let mut out = BytesMut::new();
    let before = allocations();
    encode_method_frame(1, &declare, &mut out);
    assert_eq!(allocations() - before, 1);
}

//! The stream crash test's clients: producers, readers, resends, the check of a round, and
//! the tearing of the last segment.

use super::*;

pub(super) async fn environment(addr: SocketAddr) -> Environment {
    within(
        "the stream handshake",
        Environment::builder()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username("guest")
            .password("guest")
            .build(),
    )
    .await
    .unwrap()
}

/// A bare client, for `QueryPublisherSequence` and `QueryOffset` without declaring anything.
pub(super) async fn client(addr: SocketAddr) -> Client {
    let options = ClientOptions::builder()
        .host(&addr.ip().to_string())
        .port(addr.port())
        .user("guest")
        .password("guest")
        .build();
    within("the stream handshake", Client::connect(options))
        .await
        .unwrap()
}

/// `fut`, or `None` once the test said stop (the broker was killed: a pending request may
/// never be answered).
pub(super) async fn or_stop<T>(
    stop: &mut watch::Receiver<bool>,
    fut: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        value = fut => Some(value),
        _ = stop.wait_for(|stopped| *stopped) => None,
    }
}

/// Publishes with ids from `first`, `WINDOW` unconfirmed, until told to stop (or the connection
/// fails). Says on `started` when its first confirm arrived.
pub(super) async fn produce(
    addr: SocketAddr,
    p: usize,
    first: u64,
    started: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Produced {
    let mut out = Produced {
        attempted_end: first,
        confirmed: BTreeSet::new(),
    };
    let env = environment(addr).await;
    let mut producer = within(
        "DeclarePublisher",
        env.producer().name(&publisher_name(p)).build(STREAM),
    )
    .await
    .unwrap();
    let (tx, mut confirms) = mpsc::unbounded_channel();
    let mut in_flight = 0;
    loop {
        while in_flight < WINDOW {
            let id = out.attempted_end;
            out.attempted_end += 1;
            let tx = tx.clone();
            let message = Message::builder()
                .body(body(p, id))
                .publising_id(id)
                .build();
            let send = producer.send(message, move |status| {
                let _ = tx.send(status.ok().map(|s| (s.publishing_id(), s.confirmed())));
                async {}
            });
            match or_stop(&mut stop, send).await {
                Some(Ok(())) => in_flight += 1,
                _ => return out,
            }
        }
        match or_stop(&mut stop, confirms.recv()).await {
            Some(Some(Some((id, true)))) => {
                out.confirmed.insert(id);
                in_flight -= 1;
                if out.confirmed.len() == 1 {
                    let _ = started.try_send(());
                }
            }
            Some(Some(Some((id, false)))) => panic!("publisher {p}: id {id} was refused"),
            Some(_) => return out,
            None => {
                // Confirms that arrived before the connection died still count.
                while let Ok(Some((id, true))) = confirms.try_recv() {
                    out.confirmed.insert(id);
                }
                return out;
            }
        }
    }
}

/// Consumes as `READER` from `from`, storing the offset of the last message processed every
/// `STORE_EVERY` deliveries, until told to stop.
pub(super) async fn read(
    addr: SocketAddr,
    from: OffsetSpecification,
    sync_first: u64,
    ready: tokio::sync::oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Read {
    let mut out = Read {
        sync: Produced {
            attempted_end: sync_first,
            confirmed: BTreeSet::new(),
        },
        ..Default::default()
    };
    let env = environment(addr).await;
    let mut consumer = within(
        "Subscribe",
        env.consumer().name(READER).offset(from).build(STREAM),
    )
    .await
    .unwrap();
    let mut sync = within(
        "DeclarePublisher",
        env.producer().name(&publisher_name(SYNC)).build(STREAM),
    )
    .await
    .unwrap();
    // The kill waits for this: a setup the kill interrupted would fail the test for nothing.
    let _ = ready.send(());
    loop {
        let Some(Some(Ok(delivery))) = or_stop(&mut stop, consumer.next()).await else {
            return out;
        };
        let offset = delivery.offset();
        if let Body::Message(p, id) = parse(delivery.message().data().unwrap_or_default()) {
            out.deliveries.push((offset, p, id));
        }
        if out.deliveries.is_empty() || !out.deliveries.len().is_multiple_of(STORE_EVERY) {
            continue;
        }
        if !matches!(
            or_stop(&mut stop, consumer.store_offset(offset)).await,
            Some(Ok(()))
        ) {
            return out;
        }
        out.stored.push(offset);
        // StoreOffset has no response; a QueryOffset on the same connection is served after it.
        match or_stop(&mut stop, consumer.query_offset()).await {
            Some(Ok(stored)) => assert_eq!(stored, offset, "QueryOffset right after StoreOffset"),
            _ => return out,
        }
        let id = out.sync.attempted_end;
        out.sync.attempted_end += 1;
        let message = Message::builder()
            .body(body(SYNC, id))
            .publising_id(id)
            .build();
        match or_stop(&mut stop, sync.send_with_confirm(message)).await {
            Some(Ok(status)) if status.confirmed() => {
                out.sync.confirmed.insert(id);
                out.durable = Some(offset);
            }
            _ => return out,
        }
    }
}

/// Resends `ids` of publisher `p` under its name; every one must be confirmed.
pub(super) async fn resend(env: &Environment, p: usize, ids: &[u64]) {
    let mut producer = within(
        "DeclarePublisher",
        env.producer().name(&publisher_name(p)).build(STREAM),
    )
    .await
    .unwrap();
    for batch in ids.chunks(100) {
        let messages = batch
            .iter()
            .map(|&id| {
                Message::builder()
                    .body(body(p, id))
                    .publising_id(id)
                    .build()
            })
            .collect();
        let statuses = within(
            "the resent tail's confirms",
            producer.batch_send_with_confirm(messages),
        )
        .await
        .unwrap();
        assert_eq!(statuses.len(), batch.len());
        for s in statuses {
            assert!(
                s.confirmed(),
                "publisher {p}: resent id {} not confirmed",
                s.publishing_id()
            );
        }
    }
    within("the producer's close", producer.close())
        .await
        .unwrap();
}

/// Reads the stream from `first` up to the marker of `round`; checks that it holds exactly ids
/// `1..next_id[p]` of every publisher, once each and in order. Returns how many it read.
pub(super) async fn check_all(env: &Environment, round: u32, next_id: &[u64]) -> usize {
    let mut consumer = within(
        "Subscribe",
        env.consumer()
            .offset(OffsetSpecification::First)
            .build(STREAM),
    )
    .await
    .unwrap();
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); next_id.len()];
    let mut markers = Vec::new();
    let mut last_offset = None;
    let mut count = 0;
    loop {
        let delivery = within(
            &format!("message {} from first (up to marker {round})", count + 1),
            consumer.next(),
        )
        .await
        .expect("the consumer is open")
        .unwrap();
        let offset = delivery.offset();
        assert!(
            last_offset.is_none_or(|last| offset > last),
            "offset {offset} after {last_offset:?}"
        );
        last_offset = Some(offset);
        count += 1;
        match parse(delivery.message().data().unwrap_or_default()) {
            Body::Message(p, id) => seen[p].push(id),
            Body::Marker(r) => {
                markers.push(r);
                if r == round {
                    break;
                }
            }
        }
    }
    within("the consumer's close", consumer.handle().close())
        .await
        .unwrap();
    assert_eq!(markers, (0..=round).collect::<Vec<_>>(), "each marker once");
    for (p, ids) in seen.iter().enumerate() {
        let expected: Vec<u64> = (1..next_id[p]).collect();
        if *ids != expected {
            let dups = ids.len() - ids.iter().collect::<BTreeSet<_>>().len();
            let missing: Vec<_> = expected
                .iter()
                .filter(|id| !ids.contains(id))
                .take(5)
                .collect();
            panic!(
                "publisher {p}: {} messages read from first, expected ids 1..{} once each in order; \
                 {dups} duplicates, first missing {missing:?}",
                ids.len(),
                next_id[p]
            );
        }
    }
    count
}

/// Where a write torn by the crash would be: the last segment and index of the stream.
pub(super) fn last_segment(data: &Path) -> (PathBuf, PathBuf) {
    let mut segments = Vec::new();
    let mut dirs = vec![data.join("streams")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "segment") {
                segments.push(path);
            }
        }
    }
    let segment = segments
        .into_iter()
        .max_by(|a, b| a.file_name().cmp(&b.file_name()))
        .expect("the stream has a segment");
    let index = segment.with_extension("index");
    (segment, index)
}

/// Appends the beginning of a chunk (its magic and version, then random bytes) to the last
/// segment, and part of a 56-byte record to its index.
pub(super) fn tear(data: &Path, rng: &mut Rng) -> String {
    let (segment, index) = last_segment(data);
    let mut chunk = vec![0x50, 0x00];
    chunk.extend((0..rng.below(300)).map(|_| rng.below(256) as u8));
    let record: Vec<u8> = (0..1 + rng.below(55))
        .map(|_| rng.below(256) as u8)
        .collect();
    for (path, bytes) in [(&segment, &chunk), (&index, &record)] {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }
    format!(
        "{} bytes torn onto {}, {} onto its index",
        chunk.len(),
        segment.display(),
        record.len()
    )
}

//! Helpers for the Watch tests: bounded reads from a watch stream and views of responses.
//!
//! Every wait has a deadline; a read that times out, fails or finds the stream closed panics with
//! what was expected. Nothing here sleeps to synchronise.

use std::fmt::Write as _;
use std::time::Duration;

use etcd_client::{EventType, WatchResponse, WatchResponseStream, WatchStream};

/// Default bound on a single read from a watch stream.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Something watch responses can be read from (a whole stream or its response half).
#[allow(async_fn_in_trait)]
pub trait Responses {
    async fn next_message(&mut self) -> Result<Option<WatchResponse>, etcd_client::Error>;
}

impl Responses for WatchStream {
    async fn next_message(&mut self) -> Result<Option<WatchResponse>, etcd_client::Error> {
        self.message().await
    }
}

impl Responses for WatchResponseStream {
    async fn next_message(&mut self) -> Result<Option<WatchResponse>, etcd_client::Error> {
        self.message().await
    }
}

/// The next response, within `timeout`; panics (naming `what`) otherwise.
pub async fn next_within<S: Responses>(s: &mut S, timeout: Duration, what: &str) -> WatchResponse {
    match tokio::time::timeout(timeout, s.next_message()).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => panic!("watch stream closed while waiting for {what}"),
        Ok(Err(e)) => panic!("watch stream failed while waiting for {what}: {e:?}"),
        Err(_) => panic!("no watch response within {timeout:?} while waiting for {what}"),
    }
}

/// The next response within [`READ_TIMEOUT`].
pub async fn next<S: Responses>(s: &mut S, what: &str) -> WatchResponse {
    next_within(s, READ_TIMEOUT, what).await
}

/// One event, flattened: (type, key, value, mod_revision).
pub type Ev = (EventType, String, String, i64);

/// The events of a response, flattened.
pub fn evs(r: &WatchResponse) -> Vec<Ev> {
    r.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("event without kv");
            (
                e.event_type(),
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
            )
        })
        .collect()
}

/// A PUT event as [`evs`] shows it.
pub fn put(key: &str, value: &str, rev: i64) -> Ev {
    (EventType::Put, key.into(), value.into(), rev)
}

/// A DELETE event as [`evs`] shows it.
pub fn del(key: &str, rev: i64) -> Ev {
    (EventType::Delete, key.into(), String::new(), rev)
}

/// The header revision of a response (panics without a header).
pub fn rev(r: &WatchResponse) -> i64 {
    r.header()
        .expect("watch response without header")
        .revision()
}

/// Reads responses until `n` events have arrived (within `timeout` overall); returns them with the
/// responses they came in, for watcher `id` only (responses for other watchers are skipped).
pub async fn collect_events<S: Responses>(
    s: &mut S,
    id: i64,
    n: usize,
    timeout: Duration,
) -> (Vec<Ev>, Vec<WatchResponse>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = Vec::new();
    let mut resps = Vec::new();
    while events.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let what = format!("event {} of {n} for watcher {id}", events.len() + 1);
        let r = next_within(s, left, &what).await;
        if r.watch_id() != id {
            continue;
        }
        assert!(!r.canceled(), "watcher {id} canceled: {r:?}");
        events.extend(evs(&r));
        resps.push(r);
    }
    (events, resps)
}

/// A `fmt::Write` that keeps the first `limit` bytes and then stops the formatting.
struct Prefix {
    out: String,
    limit: usize,
}

impl std::fmt::Write for Prefix {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.limit.saturating_sub(self.out.len());
        if s.len() > room {
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.out.push_str(&s[..cut]);
            return Err(std::fmt::Error);
        }
        self.out.push_str(s);
        Ok(())
    }
}

/// The `fragment` flag of a response. etcd-client 0.21 has no accessor for it (only with its
/// `pub-response-field` feature), so it is read from the Debug form of the inner message, whose
/// fields before `events` (header, ids, flags, reason) are small: formatting stops after 4 KiB.
pub fn is_fragment(r: &WatchResponse) -> bool {
    let mut p = Prefix {
        out: String::new(),
        limit: 4096,
    };
    let _ = write!(p, "{r:?}");
    if p.out.contains("fragment: true") {
        true
    } else if p.out.contains("fragment: false") {
        false
    } else {
        panic!("no fragment field in the Debug form: {}", p.out)
    }
}

//! Watch guarantees, as etcd's robustness suite defines them, checked on what every watcher of a run
//! received:
//! * **ordered**: revisions never go back, within a stream and across its responses;
//! * **unique**: no (revision, key) event twice on a stream;
//! * **atomic**: all of a revision's events that match the watch arrive in one response;
//! * **bookmarkable**: a progress notification's revision is not ahead of what was delivered: no
//!   event of that revision or below arrives after it;
//! * **reliable**: between its start and the last revision it saw, a stream misses no matching event;
//! * **resumable**: a watch from revision r starts with the first matching event at r or later;
//! * **consistent**: every stream reporting an event at (revision, key) reports the same change,
//!   and it agrees with what the write's client was told.
//!
//! The truth a stream is compared with is the union of every stream's events and every write whose
//! response gave its revision (a write with an unknown outcome is known only through the watchers).

use std::collections::{BTreeMap, BTreeSet};

/// One change, as a watch event reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Event {
    pub revision: i64,
    pub key: String,
    /// The new value; None for a delete.
    pub value: Option<String>,
}

/// One response on a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchResponse {
    pub events: Vec<Event>,
    /// The header revision (a progress notification's position).
    pub revision: i64,
    /// A progress notification (no events, only a revision).
    pub progress: bool,
}

/// Everything one watch stream received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRecord {
    /// Keys watched: those starting with `prefix`.
    pub prefix: String,
    /// The revision it asked to start from (0: from now; resumability is not checked).
    pub start: i64,
    pub responses: Vec<WatchResponse>,
}

/// A broken guarantee: which stream (index), which guarantee, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub watch: usize,
    pub guarantee: &'static str,
    pub detail: String,
}

/// Checks every stream against the guarantees; `writes` are the changes whose clients learnt their
/// revision. Returns every violation found (none: all guarantees hold).
pub fn check_watches(watches: &[WatchRecord], writes: &[Event]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut v = |watch: usize, guarantee: &'static str, detail: String| {
        out.push(Violation {
            watch,
            guarantee,
            detail,
        })
    };
    // The truth: (revision, key) -> value, with the first report kept and disagreements flagged.
    let mut truth: BTreeMap<(i64, String), Option<String>> = BTreeMap::new();
    let mut origin: BTreeMap<(i64, String), usize> = BTreeMap::new();
    for e in writes {
        truth.insert((e.revision, e.key.clone()), e.value.clone());
    }
    for (w, rec) in watches.iter().enumerate() {
        for e in rec.responses.iter().flat_map(|r| r.events.iter()) {
            let k = (e.revision, e.key.clone());
            match truth.get(&k) {
                Some(known) if *known != e.value => v(
                    w,
                    "consistent",
                    format!(
                        "{} at {}: {:?}, but {} says {known:?}",
                        e.key,
                        e.revision,
                        e.value,
                        origin
                            .get(&k)
                            .map_or("its writer".to_string(), |o| format!("watch {o}"))
                    ),
                ),
                Some(_) => {}
                None => {
                    truth.insert(k.clone(), e.value.clone());
                    origin.insert(k, w);
                }
            }
        }
    }
    for (w, rec) in watches.iter().enumerate() {
        let matches = |key: &str| key.starts_with(&rec.prefix);
        let mut last: i64 = 0;
        let mut delivered: BTreeSet<(i64, String)> = BTreeSet::new();
        let mut progress_at: i64 = 0;
        let mut first: Option<i64> = None;
        for (i, r) in rec.responses.iter().enumerate() {
            if r.progress && r.events.is_empty() {
                if r.revision < last {
                    v(
                        w,
                        "bookmarkable",
                        format!("progress at {} after events up to {last}", r.revision),
                    );
                }
                progress_at = progress_at.max(r.revision);
                continue;
            }
            let mut revs_here = BTreeSet::new();
            for e in &r.events {
                first.get_or_insert(e.revision);
                if e.revision < last {
                    v(
                        w,
                        "ordered",
                        format!("event at {} after {last} (response {i})", e.revision),
                    );
                }
                if e.revision <= progress_at {
                    v(
                        w,
                        "bookmarkable",
                        format!("event at {} after progress at {progress_at}", e.revision),
                    );
                }
                if !delivered.insert((e.revision, e.key.clone())) {
                    v(w, "unique", format!("{} at {} twice", e.key, e.revision));
                }
                last = last.max(e.revision);
                revs_here.insert(e.revision);
            }
            // Atomic: every matching change of each revision in this response is in it.
            for rev in revs_here {
                for ((_, key), _) in truth.range((rev, String::new())..(rev + 1, String::new())) {
                    if matches(key) && !r.events.iter().any(|e| e.revision == rev && &e.key == key)
                    {
                        v(
                            w,
                            "atomic",
                            format!("{key} at {rev} not in the response with that revision"),
                        );
                    }
                }
            }
        }
        if rec.start > 0 {
            if let Some(f) = first {
                if f < rec.start {
                    v(
                        w,
                        "resumable",
                        format!("started at {f}, asked for {}", rec.start),
                    );
                }
            }
        }
        // Reliable: nothing matching is missing between the start and the last revision seen.
        let from = if rec.start > 0 {
            rec.start
        } else {
            first.unwrap_or(i64::MAX)
        };
        for ((rev, key), _) in truth.range((from, String::new())..(last + 1, String::new())) {
            if matches(key) && !delivered.contains(&(*rev, key.clone())) {
                v(w, "reliable", format!("{key} at {rev} missing"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(revision: i64, key: &str, value: Option<&str>) -> Event {
        Event {
            revision,
            key: key.into(),
            value: value.map(String::from),
        }
    }

    fn resp(events: Vec<Event>) -> WatchResponse {
        let revision = events.last().map_or(0, |e| e.revision);
        WatchResponse {
            events,
            revision,
            progress: false,
        }
    }

    fn progress(revision: i64) -> WatchResponse {
        WatchResponse {
            events: vec![],
            revision,
            progress: true,
        }
    }

    /// Writes at 2 (a), 3 (b and a in one txn), 4 (a deleted).
    fn writes() -> Vec<Event> {
        vec![
            ev(2, "a", Some("1")),
            ev(3, "a", Some("2")),
            ev(3, "b", Some("1")),
            ev(4, "a", None),
        ]
    }

    fn good() -> WatchRecord {
        WatchRecord {
            prefix: String::new(),
            start: 2,
            responses: vec![
                resp(vec![ev(2, "a", Some("1"))]),
                resp(vec![ev(3, "a", Some("2")), ev(3, "b", Some("1"))]),
                progress(3),
                resp(vec![ev(4, "a", None)]),
                progress(4),
            ],
        }
    }

    fn guarantees(rec: WatchRecord) -> Vec<&'static str> {
        let mut g: Vec<_> = check_watches(&[good(), rec], &writes())
            .into_iter()
            .map(|v| v.guarantee)
            .collect();
        g.dedup();
        g
    }

    #[test]
    fn a_faithful_stream_passes() {
        assert_eq!(check_watches(&[good()], &writes()), vec![]);
        // A prefix watch sees only its keys, and that is complete.
        let only_b = WatchRecord {
            prefix: "b".into(),
            start: 1,
            responses: vec![resp(vec![ev(3, "b", Some("1"))]), progress(4)],
        };
        assert_eq!(check_watches(&[only_b], &writes()), vec![]);
    }

    #[test]
    fn each_broken_guarantee_is_named() {
        let mut r = good();
        r.responses.swap(0, 1);
        assert!(guarantees(r).contains(&"ordered"));

        let mut r = good();
        r.responses.insert(1, resp(vec![ev(2, "a", Some("1"))]));
        assert!(guarantees(r).contains(&"unique"));

        let mut r = good();
        r.responses[1] = resp(vec![ev(3, "a", Some("2"))]);
        r.responses.insert(2, resp(vec![ev(3, "b", Some("1"))]));
        assert!(guarantees(r).contains(&"atomic"));

        let mut r = good();
        r.responses.insert(1, progress(3));
        assert!(guarantees(r).contains(&"bookmarkable"));

        let mut r = good();
        r.responses.remove(1);
        assert_eq!(guarantees(r), vec!["reliable"]);

        let mut r = good();
        r.start = 3;
        assert_eq!(guarantees(r), vec!["resumable"]);

        let mut r = good();
        r.responses[0] = resp(vec![ev(2, "a", Some("other"))]);
        assert_eq!(guarantees(r), vec!["consistent"]);
    }
}

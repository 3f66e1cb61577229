//! Linearizability of a history against the etcd model: is there an order of the operations,
//! consistent with real time (an operation that returned before another was called comes first),
//! in which the model gives every determinate operation the response it got?
//!
//! The search is Wing & Gong's with Lowe's memoization (as porcupine does it): depth first, each step
//! linearizes one of the operations that may come next (called before every other pending operation
//! returned), and a (set of linearized operations, model state) pair seen before is not searched
//! again. Indeterminate writes may be linearized at any point after their call, or never;
//! indeterminate reads and refused operations constrain nothing and are left out. Returned revisions
//! prune the search: once the store's revision has passed the revision an operation's response fixes
//! (see `model::revision_before`), that operation can no longer be placed, so the branch is dead.
//!
//! Invariant: `Linearizable` and `NotLinearizable` are exact answers; a search that runs out of its
//! step budget says `Unknown` and how far it got, never a guess.

use std::collections::HashSet;

use crate::history::{History, Op, Outcome};
use crate::model::{mix, revision_before, State, Undo};

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An order exists; `steps` operations were tried on the way.
    Linearizable { steps: u64 },
    /// No order exists. `longest` is the most operations any order could place; `stuck` are the
    /// operations (indices into the history) that could come next there and did not fit.
    NotLinearizable { longest: usize, stuck: Vec<usize> },
    /// The step budget ran out after `steps` steps, `longest` operations placed at most.
    Unknown { steps: u64, longest: usize },
}

/// The operations the search works on, in call order.
struct Entry {
    /// Index into the history.
    at: usize,
    op: Op,
    determinate: bool,
    /// The store revision its response fixes (for determinate operations).
    before: i64,
    /// Its bit in the memo's set hash.
    word: u128,
}

fn op_word(i: usize) -> u128 {
    let a = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x1234_5678;
    (u128::from(mix(a)) << 64) | u128::from(mix(a ^ 0xdead_beef))
}

/// Checks `h`, trying at most `budget` steps.
pub fn check(h: &History, budget: u64) -> Verdict {
    let mut entries: Vec<Entry> = h
        .ops
        .iter()
        .enumerate()
        .filter_map(|(at, op)| {
            let (determinate, before) = match &op.outcome {
                Outcome::Ok(r) => (true, revision_before(r)),
                Outcome::Failed => return None,
                Outcome::Indeterminate => {
                    if matches!(op.request, crate::history::Request::Get { .. }) {
                        return None;
                    }
                    (false, i64::MAX)
                }
            };
            Some(Entry {
                at,
                op: op.clone(),
                determinate,
                before,
                word: 0,
            })
        })
        .collect();
    entries.sort_by_key(|e| (e.op.call, e.op.ret));
    for (i, e) in entries.iter_mut().enumerate() {
        e.word = op_word(i);
    }
    let must = entries.iter().filter(|e| e.determinate).count();

    let mut state = State::new();
    let mut open = Open::new(&entries);
    let mut placed_must = 0usize;
    let mut set_hash: u128 = 0;
    let mut seen: HashSet<u128> = HashSet::new();
    // The path: (entry, undo), and per depth what is left to try there.
    let mut path: Vec<(usize, Undo)> = Vec::new();
    let mut frontier: Vec<Level> = vec![open.candidates(&entries, &state)];
    let (mut steps, mut longest, mut stuck) = (0u64, 0usize, Vec::new());

    loop {
        if placed_must == must {
            return Verdict::Linearizable { steps };
        }
        let depth = path.len();
        if depth > longest || (depth == longest && stuck.is_empty()) {
            longest = depth;
            let level = &frontier[depth];
            stuck = match level.dead {
                Some(d) => vec![entries[d].at],
                None => level.next.iter().map(|&i| entries[i].at).collect(),
            };
        }
        let next = frontier[depth].next.pop();
        let Some(i) = next else {
            // Dead end: back up one.
            frontier.pop();
            let Some((j, undo)) = path.pop() else {
                return Verdict::NotLinearizable { longest, stuck };
            };
            state.undo(undo);
            open.reopen(&entries, j);
            set_hash ^= entries[j].word;
            if entries[j].determinate {
                placed_must -= 1;
            }
            continue;
        };
        steps += 1;
        if steps > budget {
            return Verdict::Unknown { steps, longest };
        }
        let e = &entries[i];
        let resp = match &e.op.outcome {
            Outcome::Ok(r) => Some(r),
            _ => None,
        };
        let Some(undo) = state.step(&e.op.request, resp) else {
            continue;
        };
        if !seen.insert(set_hash ^ e.word ^ state.hash()) {
            state.undo(undo);
            continue;
        }
        open.close(&entries, i);
        set_hash ^= e.word;
        if e.determinate {
            placed_must += 1;
        }
        path.push((i, undo));
        frontier.push(open.candidates(&entries, &state));
    }
}

/// The operations not linearized yet, indexed for the search's questions: which come first by
/// call, which returns first, and which fixes the lowest revision.
struct Open {
    /// Entry indices (entries are in call order).
    by_call: std::collections::BTreeSet<usize>,
    /// (return time, index) of the determinate ones.
    by_ret: std::collections::BTreeSet<(u64, usize)>,
    /// (revision its response fixes, index) of the determinate ones.
    by_before: std::collections::BTreeSet<(i64, usize)>,
}

impl Open {
    fn new(entries: &[Entry]) -> Open {
        let mut o = Open {
            by_call: Default::default(),
            by_ret: Default::default(),
            by_before: Default::default(),
        };
        for i in 0..entries.len() {
            o.reopen(entries, i);
        }
        o
    }

    fn reopen(&mut self, entries: &[Entry], i: usize) {
        self.by_call.insert(i);
        if entries[i].determinate {
            self.by_ret.insert((entries[i].op.ret, i));
            self.by_before.insert((entries[i].before, i));
        }
    }

    fn close(&mut self, entries: &[Entry], i: usize) {
        self.by_call.remove(&i);
        if entries[i].determinate {
            self.by_ret.remove(&(entries[i].op.ret, i));
            self.by_before.remove(&(entries[i].before, i));
        }
    }

    /// The operations that may be linearized next, or none when some determinate operation can no
    /// longer be placed at all.
    fn candidates(&self, entries: &[Entry], state: &State) -> Level {
        if let Some(&(before, i)) = self.by_before.first() {
            if before < state.revision {
                return Level {
                    next: Vec::new(),
                    dead: Some(i),
                };
            }
        }
        let min_ret = self.by_ret.first().map_or(u64::MAX, |&(r, _)| r);
        let mut out: Vec<usize> = self
            .by_call
            .iter()
            .copied()
            .take_while(|&i| entries[i].op.call < min_ret)
            .collect();
        // Operations whose response fixes the current revision first, then other determinate
        // ones, indeterminate writes last; each group earliest return first.
        let rank = |e: &Entry| {
            let group = if e.determinate && e.before == state.revision {
                0
            } else if e.determinate {
                1
            } else {
                2
            };
            (group, e.op.ret)
        };
        out.sort_by_key(|&i| std::cmp::Reverse(rank(&entries[i])));
        Level {
            next: out,
            dead: None,
        }
    }
}

/// One depth of the search: what is left to try there.
struct Level {
    /// Candidates, the most promising last (popped first).
    next: Vec<usize>,
    /// A determinate operation that can no longer be placed (the store's revision passed the one
    /// its response fixes): the level is dead.
    dead: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Request, Response};

    fn put(k: &str, v: &str) -> Request {
        Request::Put {
            key: k.into(),
            value: v.into(),
        }
    }

    fn get(k: &str) -> Request {
        Request::Get { key: k.into() }
    }

    fn got(v: Option<(&str, i64)>, revision: i64) -> Outcome {
        Outcome::Ok(Response::Get {
            value: v.map(|(s, r)| (s.to_string(), r)),
            revision,
        })
    }

    fn wrote(revision: i64) -> Outcome {
        Outcome::Ok(Response::Put { revision })
    }

    const BUDGET: u64 = 1_000_000;

    #[test]
    fn concurrent_writes_in_either_order_are_linearizable() {
        let mut h = History::new();
        h.push(1, put("a", "1"), wrote(3), 0, 10);
        h.push(2, put("a", "2"), wrote(2), 1, 9);
        h.push(3, get("a"), got(Some(("1", 3)), 3), 11, 12);
        assert!(matches!(check(&h, BUDGET), Verdict::Linearizable { .. }));
    }

    /// A stale read: the write returned before the read was called, yet the read missed it.
    #[test]
    fn a_stale_read_is_flagged() {
        let mut h = History::new();
        h.push(1, put("a", "1"), wrote(2), 0, 5);
        h.push(2, get("a"), got(None, 1), 6, 8);
        match check(&h, BUDGET) {
            Verdict::NotLinearizable { longest, stuck } => {
                assert_eq!(longest, 1);
                assert_eq!(stuck, vec![1], "the read cannot follow the write");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_read_of_a_value_never_written_or_a_duplicate_revision_is_flagged() {
        let mut h = History::new();
        h.push(1, put("a", "1"), wrote(2), 0, 5);
        h.push(2, get("a"), got(Some(("9", 2)), 2), 6, 8);
        assert!(matches!(check(&h, BUDGET), Verdict::NotLinearizable { .. }));
        let mut h = History::new();
        h.push(1, put("a", "1"), wrote(2), 0, 5);
        h.push(2, put("b", "1"), wrote(2), 1, 6);
        assert!(matches!(check(&h, BUDGET), Verdict::NotLinearizable { .. }));
    }

    /// A write whose client timed out may have happened or not; a later read decides which.
    #[test]
    fn indeterminate_writes_may_take_effect_or_not() {
        for seen in [true, false] {
            let mut h = History::new();
            h.push(1, put("a", "1"), Outcome::Indeterminate, 0, 0);
            let read = if seen {
                got(Some(("1", 2)), 2)
            } else {
                got(None, 1)
            };
            h.push(2, get("a"), read, 10, 11);
            assert!(
                matches!(check(&h, BUDGET), Verdict::Linearizable { .. }),
                "seen: {seen}"
            );
        }
        // ... but not both: once seen it cannot be unseen.
        let mut h = History::new();
        h.push(1, put("a", "1"), Outcome::Indeterminate, 0, 0);
        h.push(2, get("a"), got(Some(("1", 2)), 2), 10, 11);
        h.push(3, get("a"), got(None, 1), 12, 13);
        assert!(matches!(check(&h, BUDGET), Verdict::NotLinearizable { .. }));
    }

    /// Compare-and-swap as Kubernetes uses it: two updates from the same mod revision, one wins.
    #[test]
    fn compare_and_swap_has_one_winner() {
        let cas = |v: &str| Request::Cas {
            key: "a".into(),
            expected: 2,
            value: v.into(),
        };
        let res = |succeeded, revision| {
            Outcome::Ok(Response::Cas {
                succeeded,
                revision,
            })
        };
        let mut h = History::new();
        h.push(1, put("a", "0"), wrote(2), 0, 1);
        h.push(2, cas("x"), res(true, 3), 2, 10);
        h.push(3, cas("y"), res(false, 3), 3, 11);
        assert!(matches!(check(&h, BUDGET), Verdict::Linearizable { .. }));
        let mut h = History::new();
        h.push(1, put("a", "0"), wrote(2), 0, 1);
        h.push(2, cas("x"), res(true, 3), 2, 10);
        h.push(3, cas("y"), res(true, 4), 3, 11);
        assert!(
            matches!(check(&h, BUDGET), Verdict::NotLinearizable { .. }),
            "both swapped from the same revision"
        );
    }

    /// Many clients, every read right: the memo keeps the search small; a tiny budget says Unknown.
    #[test]
    fn a_larger_history_checks_and_a_small_budget_says_unknown() {
        let mut h = History::new();
        let mut t = 0;
        let mut rev = 1;
        for round in 0..200 {
            // Four concurrent writes to different keys, then one read of each.
            for c in 0..4u32 {
                rev += 1;
                h.push(
                    c,
                    put(&format!("k{c}"), &format!("{round}")),
                    wrote(rev),
                    t + u64::from(c),
                    t + 10,
                );
            }
            t += 11;
            for c in 0..4u32 {
                let mod_rev = rev - 3 + i64::from(c);
                h.push(
                    c,
                    get(&format!("k{c}")),
                    got(Some((&format!("{round}"), mod_rev)), rev),
                    t,
                    t + 1,
                );
            }
            t += 2;
        }
        match check(&h, BUDGET) {
            Verdict::Linearizable { steps } => assert!(steps < 100_000, "{steps}"),
            v => panic!("{v:?}"),
        }
        assert!(matches!(check(&h, 10), Verdict::Unknown { steps: 11, .. }));
        // One corrupted read deep inside is found.
        let mut bad = h.clone();
        let i = bad.ops.len() / 2 + 5;
        if let Outcome::Ok(Response::Get { value, .. }) = &mut bad.ops[i].outcome {
            *value = Some(("stale".into(), 2));
        }
        assert!(matches!(
            check(&bad, BUDGET),
            Verdict::NotLinearizable { .. }
        ));
    }

    /// A tiny deterministic generator (no dependencies), for simulated histories.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Simulates `clients` clients on one model store: each operation takes effect at a random
    /// moment inside its call..return interval, so the history is linearizable by construction;
    /// some outcomes are then lost (indeterminate).
    fn simulated(seed: u64, clients: u32, ops_each: usize) -> History {
        let mut rng = Rng(seed);
        // (effect time, client, request, call, ret)
        let mut planned = Vec::new();
        for c in 0..clients {
            let mut t = rng.below(5);
            for _ in 0..ops_each {
                let call = t;
                let ret = call + 1 + rng.below(20);
                let effect = call + rng.below(ret - call);
                let key = format!("k{}", rng.below(3));
                let req = match rng.below(4) {
                    0 => Request::Get { key },
                    1 => Request::Delete { key },
                    2 => Request::Cas {
                        key,
                        expected: rng.below(6) as i64,
                        value: format!("c{}", rng.next()),
                    },
                    _ => Request::Put {
                        key,
                        value: format!("v{}", rng.next()),
                    },
                };
                planned.push((effect * 64 + u64::from(c), c, req, call, ret));
                t = ret + 1 + rng.below(3);
            }
        }
        planned.sort_by_key(|p| p.0);
        let mut state = State::new();
        let mut h = History::new();
        for (_, c, req, call, ret) in planned {
            let rev = state.revision;
            let resp = match &req {
                Request::Get { key } => Response::Get {
                    value: state.get(key).cloned(),
                    revision: rev,
                },
                Request::Put { .. } => Response::Put { revision: rev + 1 },
                Request::Delete { key } => {
                    let d = i64::from(state.get(key).is_some());
                    Response::Delete {
                        deleted: d,
                        revision: rev + d,
                    }
                }
                Request::Cas { key, expected, .. } => {
                    let ok = state.get(key).map_or(0, |(_, r)| *r) == *expected;
                    Response::Cas {
                        succeeded: ok,
                        revision: rev + i64::from(ok),
                    }
                }
            };
            assert!(state.step(&req, Some(&resp)).is_some());
            let outcome = if rng.below(10) == 0 {
                Outcome::Indeterminate
            } else {
                Outcome::Ok(resp)
            };
            h.push(c, req, outcome, call, ret);
        }
        h
    }

    #[test]
    fn simulated_concurrent_histories_are_linearizable_and_a_corrupted_read_is_not() {
        for seed in 1..=40 {
            let h = simulated(seed, 5, 40);
            match check(&h, BUDGET) {
                Verdict::Linearizable { .. } => {}
                v => panic!("seed {seed}: {v:?}"),
            }
            // Corrupt the first determinate read of a present key: a value nobody wrote.
            let mut bad = h.clone();
            let Some(op) = bad.ops.iter_mut().find(|o| {
                matches!(
                    &o.outcome,
                    Outcome::Ok(Response::Get { value: Some(_), .. })
                )
            }) else {
                continue;
            };
            if let Outcome::Ok(Response::Get { value: Some(v), .. }) = &mut op.outcome {
                v.0 = "never written".into();
            }
            assert!(
                matches!(check(&bad, BUDGET), Verdict::NotLinearizable { .. }),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn watch_events_settle_indeterminate_writes() {
        use crate::watch::Event;
        let mut h = History::new();
        h.push(1, put("a", "x"), Outcome::Indeterminate, 0, 0);
        h.push(2, put("a", "y"), Outcome::Indeterminate, 1, 0);
        h.push(3, put("b", "z"), wrote(3), 2, 9);
        h.push(4, get("a"), got(Some(("x", 2)), 3), 10, 11);
        let events = [
            Event {
                revision: 2,
                key: "a".into(),
                value: Some("x".into()),
            },
            Event {
                revision: 3,
                key: "b".into(),
                value: Some("z".into()),
            },
        ];
        assert_eq!(h.patch_with_watch(&events, 3), 2);
        assert_eq!(h.ops[0].outcome, wrote(2));
        assert_eq!(h.ops[1].outcome, Outcome::Failed, "never seen: no effect");
        assert!(matches!(check(&h, BUDGET), Verdict::Linearizable { .. }));
        // A watcher that stopped short settles only what it saw.
        let mut h2 = History::new();
        h2.push(1, put("a", "y"), Outcome::Indeterminate, 1, 0);
        h2.push(3, put("b", "z"), wrote(3), 2, 9);
        assert_eq!(h2.patch_with_watch(&events[..1], 2), 0);
        assert_eq!(h2.ops[0].outcome, Outcome::Indeterminate);
    }
}

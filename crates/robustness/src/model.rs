//! The etcd key-value model the histories are checked against: keys with a value and a mod
//! revision, and one store revision that every change raises by one (etcd's revision semantics for
//! single-key operations).
//!
//! The state carries a 128-bit hash kept up to date on every change (each (key, value, mod revision)
//! entry and the revision contribute a pseudo-random word, XORed in and out), so that the checker can
//! remember visited states cheaply.
//!
//! Invariant: `hash` is a function of the state alone, whatever order the changes came in.

use std::collections::HashMap;

use crate::history::{Request, Response};

/// The store as the model sees it.
#[derive(Debug, Clone)]
pub struct State {
    pub revision: i64,
    kv: HashMap<String, (String, i64)>,
    hash: u128,
}

/// What it takes to undo one step.
#[derive(Debug, Clone)]
pub struct Undo {
    revision: i64,
    key: Option<(String, Option<(String, i64)>)>,
}

/// A 64-bit mix (splitmix64's finalizer).
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn str_word(s: &str, seed: u64) -> u64 {
    s.bytes()
        .fold(mix(seed ^ s.len() as u64), |h, b| mix(h ^ u64::from(b)))
}

/// The word an entry contributes to the hash.
fn entry_word(key: &str, value: &str, mod_rev: i64) -> u128 {
    let hi = mix(str_word(key, 1) ^ str_word(value, 2).rotate_left(17) ^ mix(mod_rev as u64));
    let lo = mix(str_word(key, 3) ^ str_word(value, 4).rotate_left(29) ^ mix(!(mod_rev as u64)));
    (u128::from(hi) << 64) | u128::from(lo)
}

fn revision_word(rev: i64) -> u128 {
    (u128::from(mix(rev as u64 ^ 0x5555)) << 64) | u128::from(mix(rev as u64 ^ 0xaaaa))
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl State {
    /// An empty store at revision 1 (etcd's first revision).
    pub fn new() -> State {
        State {
            revision: 1,
            kv: HashMap::new(),
            hash: revision_word(1),
        }
    }

    pub fn hash(&self) -> u128 {
        self.hash
    }

    /// The value and mod revision of `key`.
    pub fn get(&self, key: &str) -> Option<&(String, i64)> {
        self.kv.get(key)
    }

    fn set_revision(&mut self, rev: i64) {
        self.hash ^= revision_word(self.revision) ^ revision_word(rev);
        self.revision = rev;
    }

    fn set_key(&mut self, key: &str, v: Option<(String, i64)>) -> Option<(String, i64)> {
        let old = match v {
            Some((value, rev)) => {
                self.hash ^= entry_word(key, &value, rev);
                self.kv.insert(key.to_string(), (value, rev))
            }
            None => self.kv.remove(key),
        };
        if let Some((value, rev)) = &old {
            self.hash ^= entry_word(key, value, *rev);
        }
        old
    }

    /// One write of `key` at the next revision (`None` deletes it).
    fn write(&mut self, key: &str, value: Option<&str>) -> Undo {
        let revision = self.revision;
        let next = revision + 1;
        let old = self.set_key(key, value.map(|v| (v.to_string(), next)));
        self.set_revision(next);
        Undo {
            revision,
            key: Some((key.to_string(), old)),
        }
    }

    /// Applies `req`; with `resp` given, only if the model gives the same response. Returns how to
    /// undo it, or None when the response does not match.
    pub fn step(&mut self, req: &Request, resp: Option<&Response>) -> Option<Undo> {
        let unchanged = Undo {
            revision: self.revision,
            key: None,
        };
        let rev = self.revision;
        match (req, resp) {
            (Request::Put { key, value }, None) => Some(self.write(key, Some(value))),
            (Request::Put { key, value }, Some(Response::Put { revision })) => {
                (*revision == rev + 1).then(|| self.write(key, Some(value)))
            }
            (Request::Get { .. }, None) => Some(unchanged),
            (Request::Get { key }, Some(Response::Get { value, revision })) => {
                let have = self.kv.get(key).map(|(v, r)| (v.clone(), *r));
                (*revision == rev && *value == have).then_some(unchanged)
            }
            (Request::Delete { key }, resp) => {
                let exists = self.kv.contains_key(key);
                let want = match resp {
                    None => None,
                    Some(Response::Delete { deleted, revision }) => Some((*deleted, *revision)),
                    Some(_) => return None,
                };
                let (deleted, revision) = if exists { (1, rev + 1) } else { (0, rev) };
                if want.is_some_and(|w| w != (deleted, revision)) {
                    return None;
                }
                Some(if exists {
                    self.write(key, None)
                } else {
                    unchanged
                })
            }
            (
                Request::Cas {
                    key,
                    expected,
                    value,
                },
                resp,
            ) => {
                let mod_rev = self.kv.get(key).map_or(0, |(_, r)| *r);
                let succeeded = mod_rev == *expected;
                let revision = if succeeded { rev + 1 } else { rev };
                match resp {
                    None => {}
                    Some(Response::Cas {
                        succeeded: s,
                        revision: r,
                    }) if (*s, *r) == (succeeded, revision) => {}
                    Some(_) => return None,
                }
                Some(if succeeded {
                    self.write(key, Some(value))
                } else {
                    unchanged
                })
            }
            (_, Some(_)) => None,
        }
    }

    /// Reverts a step.
    pub fn undo(&mut self, u: Undo) {
        if let Some((key, old)) = u.key {
            self.set_key(&key, old);
        }
        self.set_revision(u.revision);
    }
}

/// The store revision an operation's response fixes: a change that returned revision `r` happened on
/// a store at `r - 1`; a read or a change that changed nothing at `r`.
pub fn revision_before(resp: &Response) -> i64 {
    match resp {
        Response::Put { revision } => revision - 1,
        Response::Get { revision, .. } => *revision,
        Response::Delete { deleted, revision } => {
            if *deleted > 0 {
                revision - 1
            } else {
                *revision
            }
        }
        Response::Cas {
            succeeded,
            revision,
        } => {
            if *succeeded {
                revision - 1
            } else {
                *revision
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Request {
        Request::Put {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn steps_follow_etcds_revisions_and_undo_restores_the_hash() {
        let mut s = State::new();
        let h0 = s.hash();
        let u1 = s.step(&put("a", "1"), Some(&Response::Put { revision: 2 }));
        assert!(u1.is_some());
        assert!(
            s.step(&put("a", "2"), Some(&Response::Put { revision: 2 }))
                .is_none(),
            "a second write cannot have the same revision"
        );
        let get = Request::Get { key: "a".into() };
        assert!(s
            .step(
                &get,
                Some(&Response::Get {
                    value: Some(("1".into(), 2)),
                    revision: 2
                })
            )
            .is_some());
        assert!(s
            .step(
                &get,
                Some(&Response::Get {
                    value: None,
                    revision: 2
                })
            )
            .is_none());
        let cas = Request::Cas {
            key: "a".into(),
            expected: 2,
            value: "3".into(),
        };
        let u2 = s
            .step(
                &cas,
                Some(&Response::Cas {
                    succeeded: true,
                    revision: 3,
                }),
            )
            .unwrap();
        let h2 = s.hash();
        let del = Request::Delete { key: "a".into() };
        let u3 = s.step(&del, None).unwrap();
        assert_eq!(s.revision, 4);
        assert!(s.get("a").is_none());
        s.undo(u3);
        assert_eq!(s.hash(), h2);
        s.undo(u2);
        s.undo(u1.unwrap());
        assert_eq!((s.hash(), s.revision), (h0, 1));
        // The same state reached in another order hashes the same.
        let mut x = State::new();
        x.step(&put("b", "1"), None);
        x.step(&put("c", "1"), None);
        let mut y = State::new();
        y.step(&put("c", "1"), None);
        y.step(&put("b", "1"), None);
        assert_ne!(x.hash(), y.hash(), "mod revisions differ");
        let mut z = State::new();
        z.step(&put("b", "1"), None);
        z.step(&put("c", "1"), None);
        assert_eq!(x.hash(), z.hash());
    }
}

//! A recorded history: every operation a client issued, with when it was called and when (and how)
//! it returned, in one clock for all clients.
//!
//! An operation whose outcome the client does not know (a timeout, a lost connection) is
//! *indeterminate*: it may have taken effect at any moment after its call, or never. Its return time
//! is unbounded.
//!
//! Invariant: `call < ret` for every determinate operation (the recorder takes both from one
//! monotonic clock).

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// Put `value` at `key`.
    Put { key: String, value: String },
    /// A linearizable Get of one key.
    Get { key: String },
    /// Delete one key.
    Delete { key: String },
    /// `if mod_revision(key) == expected then put(key, value) else get(key)`, the compare-and-swap
    /// Kubernetes builds its updates on (`expected == 0`: create if absent).
    Cas {
        key: String,
        expected: i64,
        value: String,
    },
}

/// What the server answered (for a determinate operation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Response {
    /// A write's header revision.
    Put { revision: i64 },
    /// The value and mod revision of the key (None: absent) and the header revision.
    Get {
        value: Option<(String, i64)>,
        revision: i64,
    },
    /// How many keys were deleted and the header revision.
    Delete { deleted: i64, revision: i64 },
    /// Whether the compare held, and the header revision.
    Cas { succeeded: bool, revision: i64 },
}

impl Response {
    /// The header revision it carried.
    pub fn revision(&self) -> i64 {
        match self {
            Response::Put { revision }
            | Response::Get { revision, .. }
            | Response::Delete { revision, .. }
            | Response::Cas { revision, .. } => *revision,
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The server's answer.
    Ok(Response),
    /// An error the server is known not to have applied (e.g. a validation refusal).
    Failed,
    /// Unknown: it may have been applied or not.
    Indeterminate,
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub client: u32,
    pub request: Request,
    pub outcome: Outcome,
    /// When the client sent it.
    pub call: u64,
    /// When the client got the outcome (`u64::MAX` for an indeterminate operation).
    pub ret: u64,
}

/// Every operation of a run.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub ops: Vec<Op>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Records an operation; an indeterminate one gets an unbounded return time.
    pub fn push(&mut self, client: u32, request: Request, outcome: Outcome, call: u64, ret: u64) {
        let ret = if outcome == Outcome::Indeterminate {
            u64::MAX
        } else {
            ret
        };
        self.ops.push(Op {
            client,
            request,
            outcome,
            call,
            ret,
        });
    }
}

impl History {
    /// Settles the writes whose outcome the client does not know, using what the watchers saw, as
    /// etcd's robustness suite patches its histories. Every written value is unique, so a watch
    /// event carrying it gives the write's revision: the write becomes determinate (its return time
    /// stays unbounded). A Put or compare-and-swap whose value no watcher saw did not take effect
    /// at or before `watched_to`, the last revision the watchers saw completely; when `watched_to`
    /// is at least every revision a response returned, placing such a write after everything else
    /// is always consistent, so it is left out. Deletes carry no value and stay indeterminate.
    /// Returns how many operations were settled.
    pub fn patch_with_watch(&mut self, events: &[crate::watch::Event], watched_to: i64) -> usize {
        let top = self
            .ops
            .iter()
            .filter_map(|o| match &o.outcome {
                Outcome::Ok(r) => Some(r.revision()),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let seen: std::collections::HashMap<(&str, &str), i64> = events
            .iter()
            .filter_map(|e| Some(((e.key.as_str(), e.value.as_deref()?), e.revision)))
            .collect();
        let mut settled = 0;
        for op in &mut self.ops {
            if op.outcome != Outcome::Indeterminate {
                continue;
            }
            let (key, value, cas) = match &op.request {
                Request::Put { key, value } => (key, value, false),
                Request::Cas { key, value, .. } => (key, value, true),
                _ => continue,
            };
            match seen.get(&(key.as_str(), value.as_str())) {
                Some(&revision) => {
                    op.outcome = Outcome::Ok(if cas {
                        Response::Cas {
                            succeeded: true,
                            revision,
                        }
                    } else {
                        Response::Put { revision }
                    });
                }
                None if watched_to >= top => op.outcome = Outcome::Failed,
                None => continue,
            }
            settled += 1;
        }
        settled
    }
}

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

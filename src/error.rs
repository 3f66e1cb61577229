//! The one error type of metastore and the only place that maps it to `tonic::Status`.
//!
//! Every message is etcd's, byte for byte (`api/v3rpc/rpctypes/error.go`), because clients match on the
//! text (clientv3 turns a status into a typed error by its message). The gRPC codes are etcd's too.

use tonic::{Code, Status};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while serving a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The gRPC receive limit (max-request-bytes + 512 KiB), worded as grpc-go words it.
    #[error("grpc: received message larger than max ({0} vs. {1})")]
    MessageTooLarge(usize, usize),
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    BadMemberUrls,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutDueToLeaderFail,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// An Alarm request with a type etcd does not define (etcd 3.4 stores it, 3.5 panics; we refuse).
    #[error("unknown alarm type {0}")]
    UnknownAlarmType(i32),
    /// A JSON gateway body that is not the request message in proto3 JSON (grpc-gateway's own error).
    #[error("{0}")]
    InvalidJson(String),
    /// A JSON gateway body over the size limit, worded as the gRPC receive limit is.
    #[error("grpc: received message larger than max")]
    BodyTooLarge,
    /// A JSON gateway request body that broke off (the client went away).
    #[error("{0}")]
    BodyAborted(String),
    /// An error of the lock and election recipes (etcd sends them as code Unknown with this text,
    /// e.g. `election: no leader`, `session expired`).
    #[error("{0}")]
    Recipe(&'static str),
    /// A storage failure. It is not an etcd error; it goes out as `Unknown` with its text, as etcd sends
    /// every error missing from its table.
    #[error("metastore: storage: {0}")]
    Storage(String),
    /// A broken invariant inside the server (e.g. an undecodable record).
    #[error("metastore: internal: {0}")]
    Internal(String),
}

impl Error {
    /// The gRPC code etcd uses for this error.
    pub fn code(&self) -> Code {
        match self {
            Error::EmptyKey
            | Error::KeyNotFound
            | Error::ValueProvided
            | Error::LeaseProvided
            | Error::TooManyOps
            | Error::DuplicateKey
            | Error::RequestTooLarge
            | Error::BadMemberUrls
            | Error::UnknownAlarmType(_)
            | Error::InvalidJson(_) => Code::InvalidArgument,
            Error::MessageTooLarge(..)
            | Error::TooManyRequests
            | Error::NoSpace
            | Error::BodyTooLarge => Code::ResourceExhausted,
            Error::BodyAborted(_) => Code::Cancelled,
            Error::Corrupt => Code::DataLoss,
            Error::Compacted | Error::FutureRev | Error::LeaseTtlTooLarge => Code::OutOfRange,
            Error::LeaseNotFound | Error::MemberNotFound => Code::NotFound,
            Error::NotLeader
            | Error::LeaseExists
            | Error::MemberExists
            | Error::PeerUrlExists
            | Error::NotEnoughStartedMembers
            | Error::NotLearner
            | Error::LearnerNotReady
            | Error::TooManyLearners
            | Error::BadLeaderTransferee => Code::FailedPrecondition,
            Error::NoLeader
            | Error::LeaderChanged
            | Error::Timeout
            | Error::TimeoutDueToLeaderFail
            | Error::Stopped
            | Error::Unhealthy
            | Error::NotSupportedForLearner => Code::Unavailable,
            // Not in etcd's mapping table: goes out as Unknown with its text, as etcd sends it.
            Error::LeaderTransferTimeout
            | Error::Recipe(_)
            | Error::Storage(_)
            | Error::Internal(_) => Code::Unknown,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Error {
        Error::Storage(e.into_string())
    }
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Error {
        Error::Internal(format!("decode: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_are_etcds() {
        let s: Status = Error::EmptyKey.into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "etcdserver: key is not provided");
        let s: Status = Error::Compacted.into();
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s: Status = Error::LeaseNotFound.into();
        assert_eq!(s.code(), Code::NotFound);
        let s: Status = Error::MessageTooLarge(3, 2).into();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "grpc: received message larger than max (3 vs. 2)"
        );
    }
}

//! etcd's checks of a request's shape, made before it is proposed or read (the one place for them):
//! empty keys, ignore_* flags with values, txn size and duplicate keys (etcd's `checkTxnRequest` and
//! `checkIntervals`), lease TTLs, member peer URLs, alarm types and message sizes. Checks that need
//! state (does the key or lease exist, revisions) belong to apply and MVCC.
//!
//! Invariant: each check returns etcd's error for the case (`error.rs` maps it to etcd's code and
//! message), never a panic, whatever the request holds.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::lease::MAX_LEASE_TTL;
use crate::proto::etcdserverpb::{
    request_op::Request, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};

/// A Range needs a key.
pub fn range(req: &RangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// A DeleteRange needs a key.
pub fn delete_range(req: &DeleteRangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// A LeaseGrant's TTL is at most etcd's maximum.
pub fn lease_grant(req: &LeaseGrantRequest) -> Result<()> {
    if req.ttl > MAX_LEASE_TTL {
        return Err(Error::LeaseTtlTooLarge);
    }
    Ok(())
}

/// Peer URLs of MemberAdd / MemberUpdate: at least one, each `http(s)://host:port` without a path.
pub fn peer_urls(urls: &[String]) -> Result<()> {
    let valid = !urls.is_empty()
        && urls.iter().all(|u| {
            url::Url::parse(u).is_ok_and(|p| {
                (p.scheme() == "http" || p.scheme() == "https")
                    && p.host_str().is_some()
                    && p.port().is_some()
                    && (p.path().is_empty() || p.path() == "/")
            })
        });
    if !valid {
        return Err(Error::BadMemberUrls);
    }
    Ok(())
}

/// An Alarm request names a type etcd knows.
pub fn alarm_type(alarm: i32) -> Result<()> {
    if !crate::alarm::AlarmSet::known_type(alarm) {
        return Err(Error::UnknownAlarmType(alarm));
    }
    Ok(())
}

/// A request bigger than the gRPC receive limit is refused, as grpc-go refuses it in etcd.
pub fn message_size(m: &impl prost::Message, limit: usize) -> Result<()> {
    let len = m.encoded_len();
    if len > limit {
        return Err(Error::MessageTooLarge(len, limit));
    }
    Ok(())
}

/// Validates a Txn before it is proposed (etcd's `checkTxnRequest` and `checkIntervals`).
pub fn txn(req: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    check_txn(req, max_txn_ops)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

/// Validates a Put before it is proposed.
pub fn put(req: &PutRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

fn check_txn(req: &TxnRequest, max_ops: usize) -> Result<()> {
    let opc = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    if opc > max_ops {
        return Err(Error::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in req.success.iter().chain(req.failure.iter()) {
        match &op.request {
            None => return Err(Error::KeyNotFound),
            Some(Request::RequestRange(r)) if r.key.is_empty() => return Err(Error::EmptyKey),
            Some(Request::RequestRange(_)) => {}
            Some(Request::RequestPut(p)) => put(p)?,
            Some(Request::RequestDeleteRange(d)) if d.key.is_empty() => {
                return Err(Error::EmptyKey)
            }
            Some(Request::RequestDeleteRange(_)) => {}
            Some(Request::RequestTxn(t)) => check_txn(t, max_ops - opc)?,
        }
    }
    Ok(())
}

/// A half-open interval of keys deleted by a txn branch; `end == None` is a single key.
struct Del {
    key: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Del {
    fn covers(&self, k: &[u8]) -> bool {
        match &self.end {
            None => k == self.key.as_slice(),
            Some(e) => k >= self.key.as_slice() && k < e.as_slice(),
        }
    }
}

/// etcd's duplicate-key rule: within one branch (nested txns included) no key is put twice and no put
/// key lies in a deleted range; the two branches of one nested txn may put the same key.
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Del>)> {
    let mut dels: Vec<Del> = Vec::new();
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            dels.push(Del {
                key: d.key.clone(),
                end: (!d.range_end.is_empty()).then(|| d.range_end.clone()),
            });
        }
    }
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.iter().any(|d| d.covers(k)) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in puts_else {
            if puts.contains(&k) && !puts_then.contains(&k) {
                return Err(Error::DuplicateKey);
            }
            if dels.iter().any(|d| d.covers(&k)) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        if let Some(Request::RequestPut(p)) = &op.request {
            if puts.contains(&p.key) || dels.iter().any(|d| d.covers(&p.key)) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(p.key.clone());
        }
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::request_op;

    fn op_put(k: &str, v: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn txn_validation_rules() {
        let dup = TxnRequest {
            success: vec![op_put("a", "1"), op_put("a", "2")],
            ..Default::default()
        };
        assert_eq!(txn(&dup, 128), Err(Error::DuplicateKey));
        let put_in_del = TxnRequest {
            success: vec![
                RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(
                        DeleteRangeRequest {
                            key: "a".into(),
                            range_end: "c".into(),
                            ..Default::default()
                        },
                    )),
                },
                op_put("b", "1"),
            ],
            ..Default::default()
        };
        assert_eq!(txn(&put_in_del, 128), Err(Error::DuplicateKey));
        let branches = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest {
                    success: vec![op_put("x", "1")],
                    failure: vec![op_put("x", "2")],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        assert_eq!(txn(&branches, 128), Ok(()));
        let many = TxnRequest {
            success: (0..5).map(|i| op_put(&format!("k{i}"), "v")).collect(),
            ..Default::default()
        };
        assert_eq!(txn(&many, 4), Err(Error::TooManyOps));
        assert_eq!(txn(&many, 5), Ok(()));
        let empty_op = TxnRequest {
            success: vec![RequestOp { request: None }],
            ..Default::default()
        };
        assert_eq!(txn(&empty_op, 128), Err(Error::KeyNotFound));
    }

    #[test]
    fn shapes_get_etcds_errors() {
        assert_eq!(range(&RangeRequest::default()), Err(Error::EmptyKey));
        assert_eq!(
            delete_range(&DeleteRangeRequest::default()),
            Err(Error::EmptyKey)
        );
        let bad_put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(put(&bad_put), Err(Error::ValueProvided));
        let bad_lease = PutRequest {
            key: b"k".to_vec(),
            lease: 5,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(put(&bad_lease), Err(Error::LeaseProvided));
        let ttl = |ttl| LeaseGrantRequest { ttl, id: 0 };
        assert_eq!(lease_grant(&ttl(MAX_LEASE_TTL)), Ok(()));
        assert_eq!(
            lease_grant(&ttl(MAX_LEASE_TTL + 1)),
            Err(Error::LeaseTtlTooLarge)
        );
        assert_eq!(peer_urls(&[]), Err(Error::BadMemberUrls));
        assert_eq!(
            peer_urls(&["http://127.0.0.1".into()]),
            Err(Error::BadMemberUrls)
        );
        assert_eq!(peer_urls(&["unix://x:1".into()]), Err(Error::BadMemberUrls));
        assert_eq!(peer_urls(&["https://10.0.0.1:2380".into()]), Ok(()));
        assert_eq!(alarm_type(99), Err(Error::UnknownAlarmType(99)));
        let big = PutRequest {
            key: vec![1; 100],
            ..Default::default()
        };
        assert_eq!(message_size(&big, 1000), Ok(()));
        assert_eq!(message_size(&big, 10), Err(Error::MessageTooLarge(102, 10)));
    }
}

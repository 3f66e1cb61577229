//! Cluster alarms (etcd's NOSPACE and CORRUPT): the replicated set of active alarms, how it is stored,
//! and which requests it refuses (what a request costs against the quota is `quota.rs`'s).
//!
//! The set changes only by applying an Alarm entry, so every member holds the same set at the same
//! applied index. Apply owns the authoritative [`AlarmSet`] and writes it to the `alarms` key of the
//! `meta` column family in the same write as the entry; it publishes a copy to [`AlarmView`] once the
//! write is done, for Status. Invariant: the set is kept sorted by (alarm type, member id) with no
//! duplicates, so GET answers alike on every member.
//!
//! Refusals follow etcd's appliers: under CORRUPT, Put, DeleteRange, Txn (only writing txns reach
//! apply), Compaction, LeaseGrant and LeaseRevoke fail with `etcdserver: corrupt cluster`; under
//! NOSPACE, Put, a Txn with a top-level Put in either branch (what etcd's quota counts) and LeaseGrant
//! fail with `etcdserver: mvcc: database space exceeded`. Reads, deletes and Alarm itself always pass.

use std::sync::{Arc, RwLock};

use prost::Message;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
};
use crate::proto::metastorepb::{internal_request::Request, AlarmList};
use crate::storage::{Db, CF_META, META_ALARMS};

/// The active alarms, as apply sees them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AlarmSet {
    alarms: Vec<AlarmMember>,
    /// Whether any NOSPACE / CORRUPT alarm is active (kept with `alarms`, checked per entry).
    nospace: bool,
    corrupt: bool,
}

impl AlarmSet {
    /// The set stored in `db` (empty on a fresh data dir).
    pub fn load(db: &Db) -> Result<Self> {
        let mut alarms = match db.get(CF_META, META_ALARMS)? {
            Some(b) => AlarmList::decode(b.as_slice())?.alarms,
            None => Vec::new(),
        };
        alarms.sort_by_key(|a| (a.alarm, a.member_id));
        alarms.dedup();
        let mut set = Self {
            alarms,
            ..Self::default()
        };
        set.refresh_flags();
        Ok(set)
    }

    fn refresh_flags(&mut self) {
        let has = |t: AlarmType| self.alarms.iter().any(|a| a.alarm == t as i32);
        (self.nospace, self.corrupt) = (has(AlarmType::Nospace), has(AlarmType::Corrupt));
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        AlarmList {
            alarms: self.alarms.clone(),
        }
        .encode_to_vec()
    }

    /// Whether `t` is an alarm type etcd knows (NONE included).
    pub fn known_type(t: i32) -> bool {
        AlarmType::try_from(t).is_ok()
    }

    pub fn all(&self) -> &[AlarmMember] {
        &self.alarms
    }

    /// Applies one Alarm request; the response carries no header (the API layer fills it). Returns
    /// whether the set changed.
    pub fn apply(&mut self, r: &AlarmRequest) -> (AlarmResponse, bool) {
        let mut resp = AlarmResponse::default();
        let mut changed = false;
        match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => {
                resp.alarms = self
                    .alarms
                    .iter()
                    .filter(|a| r.alarm == AlarmType::None as i32 || a.alarm == r.alarm)
                    .cloned()
                    .collect();
            }
            Ok(AlarmAction::Activate) if r.alarm != AlarmType::None as i32 => {
                let m = AlarmMember {
                    member_id: r.member_id,
                    alarm: r.alarm,
                };
                let key = (m.alarm, m.member_id);
                if let Err(at) = self
                    .alarms
                    .binary_search_by_key(&key, |a| (a.alarm, a.member_id))
                {
                    self.alarms.insert(at, m);
                    changed = true;
                    tracing::warn!(alarm = %alarm_name(m.alarm), member = %format!("{:x}", m.member_id), "alarm raised");
                }
                resp.alarms.push(m);
            }
            Ok(AlarmAction::Deactivate) => {
                let key = (r.alarm, r.member_id);
                if let Ok(at) = self
                    .alarms
                    .binary_search_by_key(&key, |a| (a.alarm, a.member_id))
                {
                    let m = self.alarms.remove(at);
                    changed = true;
                    tracing::warn!(alarm = %alarm_name(m.alarm), member = %format!("{:x}", m.member_id), "alarm cleared");
                    resp.alarms.push(m);
                }
            }
            // ACTIVATE of NONE, and actions etcd does not know, change nothing.
            _ => {}
        }
        if changed {
            self.refresh_flags();
        }
        (resp, changed)
    }

    /// The error an active alarm makes `req` fail with, if any.
    pub fn refusal(&self, req: &Request) -> Option<Error> {
        if self.corrupt {
            match req {
                Request::Put(_)
                | Request::DeleteRange(_)
                | Request::Txn(_)
                | Request::Compaction(_)
                | Request::LeaseGrant(_)
                | Request::LeaseRevoke(_) => return Some(Error::Corrupt),
                _ => {}
            }
        }
        if self.nospace {
            match req {
                Request::Put(_) | Request::LeaseGrant(_) => return Some(Error::NoSpace),
                // As etcd's capped applier: refused when the quota would count it (top-level puts).
                Request::Txn(t) if crate::quota::txn_cost(t) > 0 => return Some(Error::NoSpace),
                _ => {}
            }
        }
        None
    }
}

/// etcd's name of an alarm type (its number when etcd has no name for it).
pub fn alarm_name(t: i32) -> String {
    // Only known types are ever stored (the API refuses others).
    match AlarmType::try_from(t) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => t.to_string(),
    }
}

/// An alarm as etcd prints it in Status's `errors` and `etcdctl alarm list` (protobuf text form,
/// trailing space included).
pub fn describe(a: &AlarmMember) -> String {
    format!("memberID:{} alarm:{} ", a.member_id, alarm_name(a.alarm))
}

/// The applied alarms, readable outside apply.
#[derive(Clone, Default)]
pub struct AlarmView(Arc<RwLock<Vec<AlarmMember>>>);

impl AlarmView {
    pub fn new(set: &AlarmSet) -> Self {
        Self(Arc::new(RwLock::new(set.all().to_vec())))
    }

    pub fn publish(&self, set: &AlarmSet) {
        let mut w = match self.0.write() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        *w = set.all().to_vec();
    }

    pub fn get(&self) -> Vec<AlarmMember> {
        match self.0.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};

    fn req(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        }
    }

    fn member(member_id: u64, alarm: AlarmType) -> AlarmMember {
        AlarmMember {
            member_id,
            alarm: alarm as i32,
        }
    }

    #[test]
    fn activate_get_deactivate_follow_etcd() {
        let mut s = AlarmSet::default();
        let (r, changed) = s.apply(&req(AlarmAction::Activate, 7, AlarmType::None));
        assert!(!changed);
        assert!(r.alarms.is_empty());
        let (r, changed) = s.apply(&req(AlarmAction::Activate, 9, AlarmType::Corrupt));
        assert!(changed);
        assert_eq!(r.alarms, vec![member(9, AlarmType::Corrupt)]);
        s.apply(&req(AlarmAction::Activate, 7, AlarmType::Nospace));
        // Activating again answers with the alarm and changes nothing.
        let (r, changed) = s.apply(&req(AlarmAction::Activate, 7, AlarmType::Nospace));
        assert!(!changed);
        assert_eq!(r.alarms, vec![member(7, AlarmType::Nospace)]);
        let (r, _) = s.apply(&req(AlarmAction::Get, 0, AlarmType::None));
        assert_eq!(
            r.alarms,
            vec![member(7, AlarmType::Nospace), member(9, AlarmType::Corrupt)]
        );
        let (r, _) = s.apply(&req(AlarmAction::Get, 0, AlarmType::Corrupt));
        assert_eq!(r.alarms, vec![member(9, AlarmType::Corrupt)]);
        // Deactivating what is not active answers nothing.
        let (r, changed) = s.apply(&req(AlarmAction::Deactivate, 9, AlarmType::Nospace));
        assert!(!changed);
        assert!(r.alarms.is_empty());
        let (r, changed) = s.apply(&req(AlarmAction::Deactivate, 9, AlarmType::Corrupt));
        assert!(changed);
        assert_eq!(r.alarms, vec![member(9, AlarmType::Corrupt)]);
        assert_eq!(s.all(), &[member(7, AlarmType::Nospace)]);
        assert_eq!(describe(&s.all()[0]), "memberID:7 alarm:NOSPACE ");
    }

    #[test]
    fn only_etcds_alarm_types_are_known() {
        assert!(AlarmSet::known_type(0) && AlarmSet::known_type(1) && AlarmSet::known_type(2));
        assert!(!AlarmSet::known_type(3) && !AlarmSet::known_type(-1));
    }

    #[test]
    fn refusals_follow_etcds_appliers() {
        let put = Request::Put(PutRequest::default());
        let range_txn = Request::Txn(TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest::default())),
            }],
            ..Default::default()
        });
        let nested_put_txn = Request::Txn(TxnRequest {
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest {
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest::default())),
                    }],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        });
        let mut s = AlarmSet::default();
        assert_eq!(s.refusal(&put), None);
        s.apply(&req(AlarmAction::Activate, 1, AlarmType::Nospace));
        assert_eq!(s.refusal(&put), Some(Error::NoSpace));
        // etcd's quota does not count puts in nested txns, so neither does the refusal.
        assert_eq!(s.refusal(&nested_put_txn), None);
        assert_eq!(s.refusal(&range_txn), None);
        s.apply(&req(AlarmAction::Activate, 1, AlarmType::Corrupt));
        assert_eq!(s.refusal(&put), Some(Error::Corrupt));
        assert_eq!(s.refusal(&range_txn), Some(Error::Corrupt));
    }
}

//! v3lockpb.Lock: etcd's distributed lock, served by the server as a recipe over KV and Lease.
//!
//! Lock(name, lease) creates `<name>/<lease in hex>` with the lease (or finds it when the same lease
//! locks again), then waits until every key under `<name>/` created before it is gone, and returns
//! the key. Unlock deletes it. The caller keeps the lease alive; if the lease ends, so does the lock.
//! A wait that fails or is abandoned (deadline, cancel) deletes the key, as etcd's client does.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::kv::{do_delete, do_range};
use super::recipes::{
    as_recipe_error, create_own_key, first_created, range_kvs, wait_deletes, DeleteOnDrop,
};
use crate::error::Error;
use crate::proto::etcdserverpb::{DeleteRangeRequest, RangeRequest};
use crate::proto::v3lockpb::{
    lock_server::Lock, LockRequest, LockResponse, UnlockRequest, UnlockResponse,
};
use crate::server::EtcdServer;

pub struct LockService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = req.into_inner();
        let mut prefix = r.name.clone();
        prefix.push(b'/');
        let mut key = prefix.clone();
        key.extend_from_slice(format!("{:x}", r.lease).as_bytes());
        let (resp, my_rev) = create_own_key(s, &key, r.lease, b"", Some(first_created(&prefix)))
            .await
            .map_err(as_recipe_error)?;
        // Until the lock is ours, a failed or abandoned wait deletes the key (etcd's Mutex.Lock
        // unlocks when its wait fails, and its context ends with the call).
        let guard = DeleteOnDrop::new(s, &key);
        let owner = range_kvs(&resp, 1);
        let mut header = resp.header;
        if owner.first().is_some_and(|o| o.create_revision != my_rev) {
            header = Some(wait_deletes(s, &prefix, my_rev - 1).await?);
            // The session may have expired while waiting: the key must still be ours.
            let mine = do_range(
                s,
                RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(as_recipe_error)?;
            if mine.kvs.is_empty() {
                return Err(Error::Recipe("session expired").into());
            }
        }
        guard.disarm();
        let rev = header.as_ref().map_or(0, |h| h.revision);
        Ok(Response::new(LockResponse {
            header: Some(s.header(rev)),
            key,
        }))
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = do_delete(
            s,
            DeleteRangeRequest {
                key: req.into_inner().key,
                ..Default::default()
            },
        )
        .await
        .map_err(as_recipe_error)?;
        Ok(Response::new(UnlockResponse { header: r.header }))
    }
}

//! The `kubernetes` Service's endpoints with several API servers: kube-apiserver's lease
//! endpoint reconciler (`--endpoint-reconciler-type=lease`,
//! `pkg/controlplane/reconcilers/lease.go`). Each server keeps a lease under
//! `/registry/masterleases/<ip>:<port>` (renewed every [`RECONCILE_INTERVAL`], stale after
//! [`LEASE_TTL`]) and sets the `kubernetes` Endpoints and EndpointSlice to the addresses of every
//! live lease, so clients in pods (and agents learning the servers) reach each live server, not
//! the one that started last. A stopping server removes its lease and itself.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use barge_datastore::Error as StoreError;
use serde_json::{json, Value};

use super::object::{decode, encode};
use crate::status::{ApiError, ApiResult};
use crate::ApiServer;

/// How often a server renews its lease and reconciles (kube's `EndpointInterval`, 10 s).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(10);
/// A lease older than this is a dead server's (kube's `DefaultEndpointReconcilerTTL`, 15 s).
pub const LEASE_TTL: Duration = Duration::from_secs(15);

const PREFIX: &str = "/registry/masterleases/";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ApiServer {
    /// Renews (or, with `alive` false, removes) this server's lease for `api`, then sets the
    /// `kubernetes` Endpoints and EndpointSlice to every live lease's address (sorted; this
    /// server's own always, while alive).
    pub async fn reconcile_api_endpoints(&self, api: SocketAddr, alive: bool) -> ApiResult<()> {
        let own = api.ip().to_string();
        // One lease per address and port (kube keys by address only): servers sharing an
        // address (one host, several ports) do not remove each other's.
        let key = format!("{PREFIX}{api}");
        let lease = json!({"ip": own, "port": api.port(), "renewTime": now_secs()});
        let (_, existing) = self.store.get(&key, None).await?;
        match (existing, alive) {
            (Some(kv), true) => match self
                .store
                .update(&key, encode(&lease), kv.mod_revision)
                .await
            {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            },
            (None, true) => match self.store.create(&key, encode(&lease)).await {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            },
            (Some(kv), false) => match self.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(_) | Err(StoreError::NotFound { .. }) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            },
            (None, false) => {}
        }
        let horizon = now_secs().saturating_sub(LEASE_TTL.as_secs());
        let mut ips: Vec<String> = self
            .stored_objects(PREFIX)
            .await?
            .into_iter()
            .filter(|l| l["renewTime"].as_u64().unwrap_or(0) >= horizon)
            .filter(|l| alive || !(l["ip"] == own.as_str() && l["port"] == api.port()))
            .filter_map(|l| l["ip"].as_str().map(String::from))
            .collect();
        if alive && !ips.contains(&own) {
            ips.push(own);
        }
        ips.sort();
        ips.dedup();
        self.set_kubernetes_addresses(&ips, api.port()).await
    }

    /// Writes `ips` into the `kubernetes` Endpoints' subset and EndpointSlice's endpoints
    /// (only when they differ; a lost race is left to the next reconcile).
    async fn set_kubernetes_addresses(&self, ips: &[String], port: u16) -> ApiResult<()> {
        let reg = self.registry();
        let find = |g: &str, p: &str| {
            reg.lookup(g, "v1", p)
                .cloned()
                .ok_or_else(|| ApiError::Internal(format!("{p} are not registered")))
        };
        let (eps, slices) = (
            find("", "endpoints")?,
            find("discovery.k8s.io", "endpointslices")?,
        );
        let subsets = if ips.is_empty() {
            json!([])
        } else {
            json!([{"addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
        };
        let endpoints: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
            .collect();
        for (info, field, value) in [
            (&eps, "subsets", subsets),
            (&slices, "endpoints", json!(endpoints)),
        ] {
            let key = info.key(Some("default"), "kubernetes");
            let (_, Some(kv)) = self.store.get(&key, None).await? else {
                continue;
            };
            let mut cur = decode(&kv)?;
            if cur[field] == value {
                continue;
            }
            cur[field] = value;
            match self.store.update(&key, encode(&cur), kv.mod_revision).await {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::Config;

    /// Two servers on one store: the endpoints list both; one stopping leaves the other;
    /// a lease not renewed within the TTL drops out.
    #[tokio::test]
    async fn the_kubernetes_endpoints_list_every_live_server() {
        let store: Arc<dyn barge_datastore::Store> = Arc::new(barge_datastore::MemStore::new());
        let a = ApiServer::new(store.clone(), Config::default());
        let b = ApiServer::new(store.clone(), Config::default());
        a.bootstrap().await.unwrap();
        let (addr_a, addr_b): (SocketAddr, SocketAddr) = (
            "10.0.0.1:6443".parse().unwrap(),
            "10.0.0.2:6443".parse().unwrap(),
        );
        a.ensure_default_services(addr_a, None).await.unwrap();
        let addresses = |api: &ApiServer| {
            let api = api.clone();
            async move {
                let reg = api.registry();
                let key = |g: &str, p: &str| {
                    reg.lookup(g, "v1", p)
                        .unwrap()
                        .key(Some("default"), "kubernetes")
                };
                let (_, kv) = api.store.get(&key("", "endpoints"), None).await.unwrap();
                let eps = decode(&kv.unwrap()).unwrap();
                let ips: Vec<String> = eps["subsets"][0]["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a["ip"].as_str().unwrap().to_string())
                    .collect();
                let (_, kv) = api
                    .store
                    .get(&key("discovery.k8s.io", "endpointslices"), None)
                    .await
                    .unwrap();
                let slice = decode(&kv.unwrap()).unwrap();
                assert_eq!(slice["endpoints"].as_array().unwrap().len(), ips.len());
                ips
            }
        };
        a.reconcile_api_endpoints(addr_a, true).await.unwrap();
        b.reconcile_api_endpoints(addr_b, true).await.unwrap();
        assert_eq!(addresses(&a).await, ["10.0.0.1", "10.0.0.2"]);
        // b stops.
        b.reconcile_api_endpoints(addr_b, false).await.unwrap();
        assert_eq!(addresses(&a).await, ["10.0.0.1"]);
        // b comes back, then dies without a word: its lease ages out of a's next reconcile.
        b.reconcile_api_endpoints(addr_b, true).await.unwrap();
        assert_eq!(addresses(&a).await, ["10.0.0.1", "10.0.0.2"]);
        let key = format!("{PREFIX}10.0.0.2:6443");
        let (_, kv) = store.get(&key, None).await.unwrap();
        let old = json!({"ip": "10.0.0.2", "port": 6443, "renewTime": now_secs() - 60});
        store
            .update(&key, encode(&old), kv.unwrap().mod_revision)
            .await
            .unwrap();
        a.reconcile_api_endpoints(addr_a, true).await.unwrap();
        assert_eq!(addresses(&a).await, ["10.0.0.1"]);
        // Two servers on one address: one stopping keeps the address listed.
        let c = ApiServer::new(store.clone(), Config::default());
        let addr_c: SocketAddr = "10.0.0.1:7443".parse().unwrap();
        c.reconcile_api_endpoints(addr_c, true).await.unwrap();
        c.reconcile_api_endpoints(addr_c, false).await.unwrap();
        assert_eq!(addresses(&a).await, ["10.0.0.1"]);
    }
}

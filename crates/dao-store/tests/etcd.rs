//! The conformance suite against a real etcd (Debian's etcd-server), one private etcd per case.

use std::sync::Arc;

use dao_store::conformance::Harness;
use dao_store::testing::EtcdServer;
use dao_store::{EtcdConfig, EtcdStore};

async fn harness() -> Harness {
    let etcd = EtcdServer::start().expect("start etcd (needs the etcd-server package)");
    let store = EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint()]))
        .await
        .unwrap();
    Harness {
        store: Arc::new(store),
        guard: Box::new(etcd),
    }
}

dao_store::conformance_tests!(harness());

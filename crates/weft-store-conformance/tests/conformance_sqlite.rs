//! The store contract, checked on the embedded SQLite backend (a fresh file per check).

use std::sync::Arc;

use weft_store::SqlStore;
use weft_store::Store;
use weft_store::server::ServerStore;
use weft_store::sqlite::Durability;
use weft_store_conformance::conformance::Fixture;
use weft_store_conformance::conformance_server::ServerFixture;

struct Sqlite {
    store: Arc<SqlStore>,
    _dir: tempfile::TempDir,
}

impl Fixture for Sqlite {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    async fn teardown(self) {}
}

impl ServerFixture for Sqlite {
    fn server_store(&self) -> Arc<dyn ServerStore> {
        self.store.clone()
    }
}

async fn fixture() -> Option<Sqlite> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqlStore::sqlite(&dir.path().join("weft.db"), Durability::Relaxed)
        .await
        .expect("open SQLite");
    Some(Sqlite {
        store: Arc::new(store),
        _dir: dir,
    })
}

weft_store_conformance::conformance_tests!(fixture);
weft_store_conformance::server_conformance_tests!(fixture);
weft_store_conformance::usage_conformance_tests!(fixture);

#[tokio::test]
async fn task_tokens_live_only_while_their_attempt_runs() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Arc::new(
        SqlStore::sqlite(&dir.path().join("weft.db"), Durability::Relaxed)
            .await
            .expect("open SQLite"),
    );
    weft_store_conformance::conformance::task_tokens_live_only_while_their_attempt_runs(
        store.clone(),
        store.clone(),
        store,
    )
    .await;
}

//! The store contract, checked on the embedded SQLite backend (a fresh file per check).

use std::sync::Arc;

use weft_store::Store;
use weft_store::conformance::Fixture;
use weft_store::sqlite::{Durability, SqliteStore};

struct Sqlite {
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl Fixture for Sqlite {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    async fn teardown(self) {}
}

async fn fixture() -> Option<Sqlite> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(&dir.path().join("weft.db"), Durability::Relaxed)
        .await
        .expect("open SQLite");
    Some(Sqlite {
        store: Arc::new(store),
        _dir: dir,
    })
}

weft_store::conformance_tests!(fixture);

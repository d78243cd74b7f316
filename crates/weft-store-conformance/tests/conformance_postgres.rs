//! The store contract, checked on PostgreSQL: each check gets a fresh database
//! `weft_test_<random>`, dropped afterwards, so checks run in parallel. Without a reachable
//! server (`WEFT_TEST_PG`) the checks skip with a message, unless `WEFT_REQUIRE_SERVICES=1`.

use std::sync::Arc;

use weft_store::SqlStore;
use weft_store::Store;
use weft_store::postgres::testing;
use weft_store::server::ServerStore;
use weft_store_conformance::conformance::Fixture;
use weft_store_conformance::conformance_server::ServerFixture;

struct Postgres {
    store: Arc<SqlStore>,
    server: String,
    name: String,
}

impl Fixture for Postgres {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    async fn teardown(self) {
        self.store.close().await;
        testing::drop_database(&self.server, &self.name)
            .await
            .expect("drop the test database");
    }
}

impl ServerFixture for Postgres {
    fn server_store(&self) -> Arc<dyn ServerStore> {
        self.store.clone()
    }
}

async fn fixture() -> Option<Postgres> {
    let server = testing::server_url().await?;
    let (name, url) = testing::create_database(&server)
        .await
        .expect("create a database");
    let store = SqlStore::postgres(&url).await.expect("open PostgreSQL");
    Some(Postgres {
        store: Arc::new(store),
        server,
        name,
    })
}

weft_store_conformance::conformance_tests!(fixture);
weft_store_conformance::server_conformance_tests!(fixture);
weft_store_conformance::usage_conformance_tests!(fixture);

/// Several processes starting at once all migrate the same fresh database without errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_migrate_once() {
    let Some(server) = testing::server_url().await else {
        return;
    };
    let (name, url) = testing::create_database(&server)
        .await
        .expect("create a database");
    let mut opens = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let url = url.clone();
        opens.spawn(async move { SqlStore::postgres(&url).await });
    }
    let mut stores = Vec::new();
    while let Some(opened) = opens.join_next().await {
        stores.push(
            opened
                .expect("join")
                .expect("every concurrent open succeeds"),
        );
    }
    let now = stores[0].now().await.expect("the schema works");
    assert!(now > 0);
    for s in &stores {
        s.close().await;
    }
    testing::drop_database(&server, &name).await.expect("drop");
}

#[tokio::test]
async fn task_tokens_live_only_while_their_attempt_runs() {
    let Some(fixture) = fixture().await else {
        return;
    };
    let store = fixture.store.clone();
    weft_store_conformance::conformance::task_tokens_live_only_while_their_attempt_runs(
        store.clone(),
        store.clone(),
        store,
    )
    .await;
    fixture.teardown().await;
}

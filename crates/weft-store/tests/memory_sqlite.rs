//! The memory table on SQLite: upsert, tenant isolation, keyword search, delete.

use serde_json::json;
use weft_store::SqlStore;
use weft_store::memory::MemoryStore;
use weft_store::sqlite::Durability;

#[tokio::test]
async fn memory_is_per_tenant_namespaced_and_searchable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::sqlite(&dir.path().join("weft.db"), Durability::Relaxed)
        .await
        .expect("open");
    store
        .memory_put(
            "acme",
            "research",
            "lyon",
            &json!({"finding": "Silk museum, 100% open"}),
        )
        .await
        .expect("put");
    store
        .memory_put("acme", "other", "paris", &json!("Louvre"))
        .await
        .expect("put");
    store
        .memory_put("globex", "research", "lyon", &json!("not yours"))
        .await
        .expect("put");

    let got = store
        .memory_get("acme", "research", "lyon")
        .await
        .expect("get");
    assert_eq!(
        got.expect("found").value["finding"],
        "Silk museum, 100% open"
    );
    assert!(
        store
            .memory_get("acme", "research", "nope")
            .await
            .expect("get")
            .is_none()
    );

    // Upsert keeps created_at and replaces the value.
    store
        .memory_put(
            "acme",
            "research",
            "lyon",
            &json!({"finding": "Silk museum, 100% open", "v": 2}),
        )
        .await
        .expect("put again");
    let hits = store
        .memory_search("acme", None, "SILK museum", 10)
        .await
        .expect("search");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].value["v"], 2);
    // `%` is matched literally, not as a wildcard.
    assert_eq!(
        store
            .memory_search("acme", None, "100%", 10)
            .await
            .expect("search")
            .len(),
        1
    );
    assert!(
        store
            .memory_search("acme", None, "1%0", 10)
            .await
            .expect("search")
            .is_empty()
    );
    // A key matches too; namespaces filter; tenants never mix.
    assert_eq!(
        store
            .memory_search("acme", Some("other"), "paris", 10)
            .await
            .expect("s")
            .len(),
        1
    );
    assert!(
        store
            .memory_search("acme", Some("research"), "paris", 10)
            .await
            .expect("s")
            .is_empty()
    );
    assert_eq!(
        store
            .memory_list("acme", None, 10)
            .await
            .expect("list")
            .len(),
        2
    );
    assert_eq!(
        store
            .memory_list("globex", None, 10)
            .await
            .expect("list")
            .len(),
        1
    );

    assert!(
        store
            .memory_delete("acme", "research", "lyon")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .memory_delete("acme", "research", "lyon")
            .await
            .expect("delete")
    );
    assert_eq!(
        store
            .memory_get("globex", "research", "lyon")
            .await
            .expect("get")
            .map(|e| e.value),
        Some(json!("not yours"))
    );
}

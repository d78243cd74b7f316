//! Skills (a folder with `skill.yaml` and an executable, run like `command`) and the memory
//! tools over a backend (the store's adapter is tested in the binary and weft-store).

use std::sync::Arc;

use serde_json::json;
use weft_tools::memory::InMemory;
use weft_tools::skills::SkillsConfig;
use weft_tools::{Context, Registry};

#[tokio::test]
async fn a_skill_folder_becomes_a_tool_run_like_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let skill = dir.path().join("shout");
    std::fs::create_dir_all(&skill).expect("mkdir");
    std::fs::write(
        skill.join("skill.yaml"),
        "name: shout\ndescription: Upper-cases `text`.\ncommand: [\"sh\", \"./run.sh\"]\n\
         input_schema: {type: object, required: [text], properties: {text: {type: string}}}\n",
    )
    .expect("manifest");
    std::fs::write(
        skill.join("run.sh"),
        "read input; text=$(printf '%s' \"$input\" | sed 's/.*\"text\":\"\\([^\"]*\\)\".*/\\1/' | tr a-z A-Z)\n\
         printf '{\"shouted\":\"%s\",\"run\":\"%s\"}' \"$text\" \"$WEFT_RUN_ID\"\n",
    )
    .expect("script");
    let mut registry = Registry::new();
    weft_tools::skills::register(
        &mut registry,
        &SkillsConfig {
            dirs: vec![dir.path().to_path_buf()],
        },
    )
    .expect("skills");
    let tool = registry.get("skill.shout").expect("registered");
    assert_eq!(tool.description(), "Upper-cases `text`.");
    assert!(tool.input_schema().is_some());
    let out = tool
        .call(json!({"text": "hello"}), &Context::for_test())
        .await
        .expect("ran");
    assert_eq!(out, json!({"shouted": "HELLO", "run": "run_test"}));
    let bad = tool.call(json!({"txt": 1}), &Context::for_test()).await;
    assert!(bad.is_err_and(|e| !e.is_transient()));

    std::fs::write(dir.path().join("shout/skill.yaml"), "name: [oops\n").expect("broken");
    let problems = weft_tools::skills::register(
        &mut Registry::new(),
        &SkillsConfig {
            dirs: vec![dir.path().to_path_buf()],
        },
    )
    .expect_err("a broken manifest is reported");
    assert!(problems[0].contains("skill.yaml"), "{problems:?}");
}

#[tokio::test]
async fn memory_tools_put_get_search_delete_per_tenant() {
    let mut registry = Registry::new();
    weft_tools::memory::register(&mut registry, Arc::new(InMemory::default()));
    let call = |tool: &'static str, input, tenant: &'static str| {
        let registry = registry.clone();
        async move {
            let mut ctx = Context::for_test();
            ctx.tenant = tenant.into();
            registry
                .get(tool)
                .expect("memory tool")
                .call(input, &ctx)
                .await
        }
    };
    let put = call(
        "memory.put",
        json!({"namespace": "research", "key": "lyon", "value": {"note": "Silk museum"}}),
        "acme",
    )
    .await
    .expect("put");
    assert_eq!(put["stored"], true);
    let got = call(
        "memory.get",
        json!({"namespace": "research", "key": "lyon"}),
        "acme",
    )
    .await
    .expect("get");
    assert_eq!(got, json!({"note": "Silk museum"}));
    let other = call(
        "memory.get",
        json!({"namespace": "research", "key": "lyon", "default": "none"}),
        "globex",
    )
    .await
    .expect("get");
    assert_eq!(other, "none", "tenants do not share memory");
    let found = call("memory.search", json!({"query": "silk"}), "acme")
        .await
        .expect("search");
    assert_eq!(found[0]["key"], "lyon");
    let deleted = call(
        "memory.delete",
        json!({"namespace": "research", "key": "lyon"}),
        "acme",
    )
    .await
    .expect("delete");
    assert_eq!(deleted["deleted"], true);
    let bad = call("memory.put", json!({"key": ""}), "acme").await;
    assert!(bad.is_err_and(|e| !e.is_transient()));
}

//! Every route, asked by another tenant about tenant alpha's records, answers exactly as for
//! a record that does not exist. The routes come from the router itself, so a new route
//! without a case here fails this test.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::json;
use weft_server::ServerOptions;

#[tokio::test]
async fn every_route_hides_other_tenants_records() {
    let h = harness(ServerOptions::default()).await;
    let yaml = "name: secret-plan\nversion: 1\nsteps:\n  - id: a\n    tool: sleep\n    with: { duration: 10s }\n";
    let r = call(
        &h,
        "POST",
        "/v1/templates",
        Some(&h.key_a),
        Some(("application/yaml", yaml)),
    )
    .await;
    assert_eq!(r.status, 201);
    let run = start_run(&h, &h.key_a, "secret-plan", json!({})).await;
    let beta = Some(h.key_b.as_str());
    let secret_body = json!({"value": "alpha-canary-value"}).to_string();
    let r = call(
        &h,
        "PUT",
        "/v1/secrets/ALPHA_TOKEN",
        Some(&h.key_a),
        Some(("application/json", &secret_body)),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // An image of alpha's run in the artifact store, readable by alpha only.
    let png = b"\x89PNG\r\n\x1a\nalpha-canary-image".to_vec();
    let artifact = h
        .server
        .state()
        .artifacts
        .as_ref()
        .expect("artifact store")
        .put("alpha", &run, png.clone(), "image/png")
        .await
        .expect("put artifact")
        .id;
    let r = call(
        &h,
        "GET",
        &format!("/v1/runs/{run}/artifacts"),
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["artifacts"][0]["id"],
        artifact.as_str(),
        "{:?}",
        r.body
    );

    // A schedule of alpha's (pinned to its template, once a year so it never fires here).
    let body =
        json!({"template": "secret-plan", "cron": "0 0 1 1 *", "name": "alpha-yearly"}).to_string();
    let r = call(
        &h,
        "POST",
        "/v1/schedules",
        Some(&h.key_a),
        Some(("application/json", &body)),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let schedule = r.body["id"].as_str().expect("schedule id").to_string();

    // Routes that name a record: beta's answer for alpha's id must equal the answer for an id
    // that exists nowhere, apart from the id itself.
    let by_id: &[(&str, &str)] = &[
        ("get", "/v1/runs/{id}"),
        ("post", "/v1/runs/{id}/cancel"),
        ("post", "/v1/runs/{id}/resume"),
        ("post", "/v1/runs/{id}/stream-tickets"),
        ("post", "/v1/runs/{id}/approvals/{step}"),
        ("post", "/v1/runs/{id}/actions/{name}"),
        ("get", "/v1/runs/{id}/events"),
        ("get", "/v1/runs/{id}/steps/{step}"),
        ("get", "/v1/runs/{id}/steps/{step}/items/{item}"),
        ("get", "/v1/runs/{id}/history"),
        ("get", "/v1/templates/{name}"),
        ("delete", "/v1/secrets/{name}"),
        ("get", "/v1/artifacts/{id}"),
        ("get", "/v1/runs/{id}/artifacts"),
        ("get", "/v1/schedules/{id}"),
        ("delete", "/v1/schedules/{id}"),
        ("post", "/v1/schedules/{id}/pause"),
        ("post", "/v1/schedules/{id}/resume"),
    ];
    // Routes without an id: each has its own check below.
    let collections: &[(&str, &str)] = &[
        ("get", "/v1/runs"),
        ("post", "/v1/runs"),
        ("get", "/v1/templates"),
        ("post", "/v1/templates"),
        ("get", "/v1/secrets"),
        ("put", "/v1/secrets/{name}"),
        ("get", "/v1/audit"),
        ("get", "/v1/tenant"),
        ("get", "/v1/schedules"),
        ("post", "/v1/schedules"),
        ("post", "/v1/ask"),
        ("get", "/v1/usage"),
    ];
    // Routes that hold no tenant's records.
    let public: &[(&str, &str)] = &[("get", "/healthz"), ("get", "/metrics")];
    // Task callbacks take a task token, which belongs to one task of one tenant; an API key
    // (of any tenant) is refused before anything is looked up. Every token class, and another
    // tenant's secret, is checked in crates/weft/tests/task_tokens.rs.
    let task_routes: &[(&str, &str)] = &[
        ("get", "/v1/task/secrets/{name}"),
        ("post", "/v1/task/progress"),
        ("post", "/v1/task/artifacts"),
        ("get", "/v1/task/memory/{namespace}/{key}"),
        ("put", "/v1/task/memory/{namespace}/{key}"),
        ("post", "/v1/task/token/renew"),
    ];

    let doc = serde_json::to_value(h.server.openapi()).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.insert((method.clone(), path.clone()));
            }
        }
    }
    let covered: BTreeSet<_> = by_id
        .iter()
        .chain(collections)
        .chain(public)
        .chain(task_routes)
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        routes, covered,
        "every route needs a cross-tenant case in this test"
    );

    for (method, path) in by_id {
        let (theirs, missing) = if path.starts_with("/v1/secrets") {
            ("ALPHA_TOKEN", "NO_SUCH_SECRET")
        } else if path.starts_with("/v1/schedules") {
            (schedule.as_str(), "sch_00000000000000000000000000")
        } else if path.starts_with("/v1/artifacts") {
            (artifact.as_str(), "00000000000000000000000000000000.png")
        } else if path.contains("{name}") && !path.starts_with("/v1/runs/") {
            ("secret-plan", "no-such-plan")
        } else {
            (run.as_str(), "run_00000000000000000000000000")
        };
        let method = method.to_uppercase();
        let foreign = call(
            &h,
            &method,
            &path
                .replace("{id}", theirs)
                .replace("{name}", theirs)
                .replace("{step}", "a")
                .replace("{item}", "0"),
            beta,
            None,
        )
        .await;
        let absent = call(
            &h,
            &method,
            &path
                .replace("{id}", missing)
                .replace("{name}", missing)
                .replace("{step}", "a")
                .replace("{item}", "0"),
            beta,
            None,
        )
        .await;
        assert_eq!(foreign.status, 404, "{method} {path}: {:?}", foreign.body);
        assert_eq!(absent.status, 404, "{method} {path}");
        let same = foreign.body.to_string().replace(theirs, "X")
            == absent.body.to_string().replace(missing, "X");
        assert!(
            same,
            "{method} {path}: {:?} vs {:?}",
            foreign.body, absent.body
        );
    }

    for (method, path) in task_routes {
        let path = path
            .replace("{name}", "ALPHA_TOKEN")
            .replace("{namespace}", "n")
            .replace("{key}", "k");
        let r = call(&h, &method.to_uppercase(), &path, beta, None).await;
        assert_eq!(r.status, 401, "{method} {path}: {:?}", r.body);
        assert_eq!(r.body["code"], "WEFT-E231", "{method} {path}");
    }

    // Alpha's run was not touched by beta's cancel.
    let r = call(&h, "GET", &format!("/v1/runs/{run}"), Some(&h.key_a), None).await;
    assert_eq!(r.body["status"], "running");

    // Lists show only one's own.
    let r = call(&h, "GET", "/v1/runs", beta, None).await;
    assert_eq!(r.status, 200);
    assert!(!r.body.to_string().contains(&run));
    let r = call(&h, "GET", "/v1/templates", beta, None).await;
    assert!(!r.body.to_string().contains("secret-plan"));
    // Secrets and the audit trail: beta sees none of alpha's, and its PUT is its own secret.
    let r = call(&h, "GET", "/v1/secrets", beta, None).await;
    assert_eq!(r.status, 200);
    assert!(!r.body.to_string().contains("ALPHA_TOKEN"), "{:?}", r.body);
    let r = call(
        &h,
        "PUT",
        "/v1/secrets/ALPHA_TOKEN",
        beta,
        Some(("application/json", r#"{"value": "beta-value"}"#)),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["created"], true);
    let r = call(&h, "GET", "/v1/secrets", Some(&h.key_a), None).await;
    assert_eq!(r.body["secrets"][0]["name"], "ALPHA_TOKEN");
    let r = call(&h, "GET", "/v1/audit", beta, None).await;
    assert_eq!(r.status, 200);
    assert!(!r.body.to_string().contains(&run), "{:?}", r.body);
    let r = call(&h, "GET", &format!("/v1/audit?run={run}"), beta, None).await;
    assert_eq!(r.body["records"], json!([]));
    let r = call(
        &h,
        "GET",
        &format!("/v1/audit?run={run}"),
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(r.body["records"][0]["action"], "run.created");
    // Usage reports count only the caller's own runs.
    let r = call(&h, "GET", "/v1/usage?group_by=run", beta, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["groups"], json!([]), "{:?}", r.body);
    let r = call(&h, "GET", "/v1/usage?group_by=run", Some(&h.key_a), None).await;
    assert_eq!(r.body["groups"][0]["key"], run.as_str(), "{:?}", r.body);
    // The tenant route names only the caller's own tenant.
    let r = call(&h, "GET", "/v1/tenant", beta, None).await;
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("beta")));
    // Schedules: beta lists none of alpha's, cannot schedule alpha's template, and alpha's
    // schedule is still active after beta's pause and delete.
    let r = call(&h, "GET", "/v1/schedules", beta, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["schedules"], json!([]));
    let body = json!({"template": "secret-plan", "cron": "0 0 1 1 *"}).to_string();
    let r = call(
        &h,
        "POST",
        "/v1/schedules",
        beta,
        Some(("application/json", &body)),
    )
    .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = call(
        &h,
        "GET",
        &format!("/v1/schedules/{schedule}"),
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(r.body["paused"], false);
    assert!(r.body["next_fire_at"].is_string());
    // ask: beta's sentences are matched against beta's templates and the server's only.
    let body = json!({"text": "secret plan", "dry_run": true}).to_string();
    let r = call(
        &h,
        "POST",
        "/v1/ask",
        beta,
        Some(("application/json", &body)),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(!r.body.to_string().contains("secret-plan"), "{:?}", r.body);
    let r = call(
        &h,
        "POST",
        "/v1/ask",
        Some(&h.key_a),
        Some(("application/json", &body)),
    )
    .await;
    assert!(r.body.to_string().contains("secret-plan"), "{:?}", r.body);
    // Another tenant's template cannot be run.
    let body = json!({"template": "secret-plan"}).to_string();
    let r = call(
        &h,
        "POST",
        "/v1/runs",
        beta,
        Some(("application/json", &body)),
    )
    .await;
    assert_eq!(r.status, 404);
    // Registering the same name and version is beta's own template, not a conflict with alpha's.
    let beta_yaml = yaml.replace("10s", "1s");
    let r = call(
        &h,
        "POST",
        "/v1/templates",
        beta,
        Some(("application/yaml", &beta_yaml)),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = call(&h, "GET", "/v1/templates/secret-plan", Some(&h.key_a), None).await;
    assert_eq!(r.body["versions"][0]["source"], yaml);

    // A ticket is for one run: alpha's ticket does not open another run's stream.
    let other = start_run(&h, &h.key_a, "steps", json!({})).await;
    let t = call(
        &h,
        "POST",
        &format!("/v1/runs/{run}/stream-tickets"),
        Some(&h.key_a),
        None,
    )
    .await;
    let ticket = t.body["ticket"].as_str().unwrap();
    let r = call(
        &h,
        "GET",
        &format!("/v1/runs/{other}/events?ticket={ticket}"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
}

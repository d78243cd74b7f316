//! `places.search` against a stand-in (tests/standins/places_standin.py) that speaks the Google
//! Places API (New) Text Search and Overpass wire formats: paging, the key header and field
//! mask, errors sorted into permanent and transient, and the common output shape.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use weft_tools::builtin::places::{Places, PlacesConfig, Provider};
use weft_tools::{Context, Error, Tool};

mod common;

struct StandIn {
    child: Child,
    url: String,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stand_in() -> StandIn {
    let script = common::repo_root().join("tests/standins/places_standin.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("test-key")
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the places stand-in");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the stand-in prints its port");
    StandIn {
        child,
        url: format!("http://127.0.0.1:{}", line.trim()),
    }
}

fn tool(provider: Provider, url: &str, key: Option<&str>) -> Places {
    Places::new(PlacesConfig {
        provider,
        api_key: key.map(str::to_string),
        api_key_env: "WEFT_TEST_PLACES_KEY_UNSET".into(),
        google_url: url.into(),
        overpass_url: format!("{url}/api/interpreter"),
        ..PlacesConfig::default()
    })
    .expect("config is valid")
}

#[tokio::test]
async fn google_text_search_pages_and_maps_fields() {
    let server = stand_in();
    let places = tool(Provider::Google, &server.url, Some("test-key"));
    let out = places
        .call(
            json!({"niche": "HVAC", "city": "Colorado Springs", "state": "Colorado"}),
            &Context::for_test(),
        )
        .await
        .expect("the search succeeds");
    let list = out.as_array().expect("a list");
    // "Colorado Springs" has 32 businesses plus the chain: two full pages and a partial one.
    assert_eq!(list.len(), 33);
    let first = &list[0];
    assert_eq!(first["place_id"], "google:p-colorado-springs-0");
    assert_eq!(first["name"], "Colorado Springs HVAC #0");
    assert_eq!(first["city"], "Colorado Springs");
    assert_eq!(first["source"], "google");
    assert_eq!(first["website"], Value::Null);
    assert_eq!(list[1]["website"], "https://colorado-springs-1.example");
    assert_eq!(list[1]["reviews"], 10);
    assert!(list.iter().any(|p| p["place_id"] == "google:p-chain"));

    let limited = places
        .call(
            json!({"niche": "HVAC", "city": "Denver", "limit": 5}),
            &Context::for_test(),
        )
        .await
        .expect("the search succeeds");
    assert_eq!(limited.as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn google_bad_or_missing_key_is_permanent_and_never_echoed() {
    let server = stand_in();
    let places = tool(Provider::Google, &server.url, Some("wrong-secret-value"));
    let err = places
        .call(
            json!({"niche": "HVAC", "city": "Denver"}),
            &Context::for_test(),
        )
        .await
        .expect_err("a bad key is refused");
    assert!(matches!(err, Error::Permanent(_)), "{err:?}");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(!err.to_string().contains("wrong-secret-value"));

    let places = tool(Provider::Google, &server.url, None);
    let err = places
        .call(
            json!({"niche": "HVAC", "city": "Denver"}),
            &Context::for_test(),
        )
        .await
        .expect_err("no key, no call");
    assert!(
        err.to_string().contains("WEFT_TEST_PLACES_KEY_UNSET"),
        "{err}"
    );
}

#[tokio::test]
async fn overpass_elements_become_places() {
    let server = stand_in();
    let places = tool(Provider::Overpass, &server.url, None);
    let out = places
        .call(
            json!({"niche": "HVAC", "city": "Boulder", "state": "Colorado"}),
            &Context::for_test(),
        )
        .await
        .expect("the search succeeds");
    let list = out.as_array().expect("a list");
    assert_eq!(list.len(), 15);
    for p in list {
        let id = p["place_id"].as_str().unwrap_or_default();
        assert!(
            id.starts_with("osm:node/") || id.starts_with("osm:way/"),
            "{id}"
        );
        assert!(p["lat"].is_f64() && p["lon"].is_f64(), "{p}");
        assert_eq!(p["address"], "1 Main Street, Boulder");
        assert_eq!(p["source"], "openstreetmap");
    }
}

#[tokio::test]
async fn unreachable_provider_is_transient() {
    let places = tool(Provider::Overpass, "http://127.0.0.1:9", None);
    let err = places
        .call(
            json!({"niche": "HVAC", "city": "Denver"}),
            &Context::for_test(),
        )
        .await
        .expect_err("nothing listens on port 9");
    assert!(err.is_transient(), "{err:?}");
}

//! The web UI and the `<weft-run>` widget, embedded in the binary: plain HTML, JavaScript and
//! CSS under `ui/`, so there is no build step and nothing to install beside `weft`.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

use crate::AppState;

#[derive(RustEmbed)]
#[folder = "ui/"]
struct Assets;

fn asset(path: &str) -> Response {
    match Assets::get(path) {
        Some(file) => (
            [
                (header::CONTENT_TYPE, file.metadata.mimetype().to_string()),
                (header::CACHE_CONTROL, "no-cache".to_string()),
            ],
            file.data.into_owned(),
        )
            .into_response(),
        None => crate::problem::Problem::new(crate::problem::Kind::NotFound, "no such file")
            .into_response(),
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { asset("index.html") }))
        .route("/weft-run.js", get(|| async { asset("weft-run.js") }))
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>| async move {
                if path.contains("..") {
                    return StatusCode::NOT_FOUND.into_response();
                }
                asset(&path)
            }),
        )
}

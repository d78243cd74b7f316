//! `places.search`: businesses of a kind in a city, from the provider `[places]` in weft.toml
//! names — Google Places API (Text Search, the "New" API) or OpenStreetMap through Overpass.
//!
//! Both answer with the same shape, one object per place with a stable `place_id`, so a
//! template can merge cities and dedupe without knowing where the data came from. The Google
//! key is read from the environment at call time and never appears in an output or an error.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{excerpt, parse_duration, parse_input};
use crate::{Context, Error, Result, Tool};

/// How much of a provider's error body goes into an error message.
const ERROR_EXCERPT: usize = 300;
/// Google returns at most 20 places a page.
const GOOGLE_PAGE: u64 = 20;

/// `[places]` in weft.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlacesConfig {
    /// `overpass` (default: OpenStreetMap, no key) or `google` (Places API Text Search).
    pub provider: Provider,
    /// The environment variable holding the Google Places API key.
    pub api_key_env: String,
    /// The key itself, usually `"${VAR}"` (read from the environment at call time); wins over
    /// `api_key_env` when set.
    pub api_key: Option<String>,
    /// Google Places API base URL (a stand-in's address in tests).
    pub google_url: String,
    /// Overpass interpreter URL.
    pub overpass_url: String,
    /// Whole-call time limit.
    pub timeout: String,
    /// Most places returned per call (Google: 20 a page, up to 3 pages).
    pub max_results: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Google,
    Overpass,
}

impl Default for PlacesConfig {
    fn default() -> Self {
        PlacesConfig {
            provider: Provider::Overpass,
            api_key_env: "GOOGLE_PLACES_API_KEY".into(),
            api_key: None,
            google_url: "https://places.googleapis.com".into(),
            overpass_url: "https://overpass-api.de/api/interpreter".into(),
            timeout: "60s".into(),
            max_results: 60,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The kind of business: "HVAC", "dentist".
    niche: String,
    city: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
}

/// One place, whichever provider found it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Place {
    /// `google:<id>` or `osm:<type>/<id>`: stable, so results from several calls dedupe.
    pub place_id: String,
    pub name: String,
    pub address: Option<String>,
    pub city: String,
    pub state: Option<String>,
    pub website: Option<String>,
    pub phone: Option<String>,
    pub rating: Option<f64>,
    pub reviews: Option<u64>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub source: &'static str,
}

pub struct Places {
    config: PlacesConfig,
    /// Built on first use: a client loads the TLS root certificates, which a process that
    /// never searches for places should not pay for.
    client: std::sync::OnceLock<std::result::Result<reqwest::Client, String>>,
    timeout: Duration,
}

impl Places {
    pub fn new(config: PlacesConfig) -> Result<Places, String> {
        let timeout =
            parse_duration("[places] timeout", &config.timeout).map_err(|e| e.to_string())?;
        Ok(Places {
            config,
            client: std::sync::OnceLock::new(),
            timeout,
        })
    }

    fn client(&self) -> Result<&reqwest::Client> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .timeout(self.timeout)
                    .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("places.search: cannot build an HTTP client: {e}"))
            })
            .as_ref()
            .map_err(|e| Error::Permanent(e.clone()))
    }

    async fn google(&self, input: &Input, limit: u64, ctx: &Context) -> Result<Vec<Place>> {
        let key = match &self.config.api_key {
            Some(text) => crate::config::expand_env(text)
                .map_err(|e| Error::Permanent(format!("places.search (google): {e}")))?,
            None => std::env::var(&self.config.api_key_env).map_err(|_| {
                Error::Permanent(format!(
                    "places.search (google): the environment variable `{}` is not set",
                    self.config.api_key_env
                ))
            })?,
        };
        let url = format!(
            "{}/v1/places:searchText",
            self.config.google_url.trim_end_matches('/')
        );
        let query = match &input.state {
            Some(state) => format!("{} in {}, {}", input.niche, input.city, state),
            None => format!("{} in {}", input.niche, input.city),
        };
        let mut places = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut body = json!({ "textQuery": query, "pageSize": GOOGLE_PAGE.min(limit) });
            if let Some(token) = &page_token {
                body["pageToken"] = Value::String(token.clone());
            }
            let request = self
                .client()?
                .post(&url)
                .header("X-Goog-Api-Key", &key)
                .header(
                    "X-Goog-FieldMask",
                    "places.id,places.displayName,places.formattedAddress,places.websiteUri,\
                     places.nationalPhoneNumber,places.rating,places.userRatingCount,\
                     places.location,nextPageToken",
                )
                .json(&body);
            let page = send(request, "google", ctx).await?;
            for p in page["places"].as_array().into_iter().flatten() {
                let Some(id) = p["id"].as_str() else { continue };
                places.push(Place {
                    place_id: format!("google:{id}"),
                    name: p["displayName"]["text"].as_str().unwrap_or(id).to_string(),
                    address: p["formattedAddress"].as_str().map(str::to_string),
                    city: input.city.clone(),
                    state: input.state.clone(),
                    website: p["websiteUri"].as_str().map(str::to_string),
                    phone: p["nationalPhoneNumber"].as_str().map(str::to_string),
                    rating: p["rating"].as_f64(),
                    reviews: p["userRatingCount"].as_u64(),
                    lat: p["location"]["latitude"].as_f64(),
                    lon: p["location"]["longitude"].as_f64(),
                    source: "google",
                });
            }
            page_token = page["nextPageToken"].as_str().map(str::to_string);
            if page_token.is_none() || places.len() as u64 >= limit {
                break;
            }
        }
        places.truncate(limit as usize);
        Ok(places)
    }

    async fn overpass(&self, input: &Input, limit: u64, ctx: &Context) -> Result<Vec<Place>> {
        let query = overpass_query(input, limit, self.timeout);
        let request = self
            .client()?
            .post(&self.config.overpass_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "data={}",
                url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
            ));
        let answer = send(request, "overpass", ctx).await?;
        let mut places = Vec::new();
        for e in answer["elements"].as_array().into_iter().flatten() {
            let tags = &e["tags"];
            let (Some(kind), Some(id), Some(name)) =
                (e["type"].as_str(), e["id"].as_u64(), tags["name"].as_str())
            else {
                continue;
            };
            let tag = |keys: &[&str]| {
                keys.iter()
                    .find_map(|k| tags[*k].as_str())
                    .map(str::to_string)
            };
            let street = match (tag(&["addr:housenumber"]), tag(&["addr:street"])) {
                (Some(n), Some(s)) => Some(format!("{n} {s}")),
                (None, Some(s)) => Some(s),
                _ => None,
            };
            let address = street.map(|s| match tag(&["addr:city"]) {
                Some(c) => format!("{s}, {c}"),
                None => s,
            });
            places.push(Place {
                place_id: format!("osm:{kind}/{id}"),
                name: name.to_string(),
                address,
                city: input.city.clone(),
                state: input.state.clone(),
                website: tag(&["website", "contact:website", "url"]),
                phone: tag(&["phone", "contact:phone"]),
                rating: None,
                reviews: None,
                lat: e["lat"].as_f64().or_else(|| e["center"]["lat"].as_f64()),
                lon: e["lon"].as_f64().or_else(|| e["center"]["lon"].as_f64()),
                source: "openstreetmap",
            });
        }
        places.truncate(limit as usize);
        Ok(places)
    }
}

/// Sends a provider request and reads its JSON; 429, 5xx and network errors may pass on
/// another attempt, other statuses cannot.
async fn send(request: reqwest::RequestBuilder, provider: &str, ctx: &Context) -> Result<Value> {
    let response = tokio::select! {
        r = request.send() => r,
        _ = ctx.cancel.cancelled() => return Err(Error::Cancelled),
    }
    .map_err(|e| {
        Error::Failed(format!(
            "places.search ({provider}): request failed: {}",
            e.without_url()
        ))
    })?;
    let status = response.status();
    let text = response.text().await.map_err(|e| {
        Error::Failed(format!(
            "places.search ({provider}): reading the answer: {}",
            e.without_url()
        ))
    })?;
    if !status.is_success() {
        let message = format!(
            "places.search ({provider}): HTTP {status}: {}",
            excerpt(&text, ERROR_EXCERPT)
        );
        return Err(if status.as_u16() == 429 || status.is_server_error() {
            Error::Failed(message)
        } else {
            Error::Permanent(message)
        });
    }
    serde_json::from_str(&text).map_err(|e| {
        Error::Failed(format!(
            "places.search ({provider}): the answer is not JSON ({e}): {}",
            excerpt(&text, ERROR_EXCERPT)
        ))
    })
}

/// Overpass QL: named places in the city (inside the state when given) whose name, shop,
/// craft, office or amenity matches the niche.
fn overpass_query(input: &Input, limit: u64, timeout: Duration) -> String {
    let quote = |s: &str| s.replace(['"', '\\'], "");
    // Regex metacharacters become "any character": a niche is a word, not a pattern.
    let niche: String = input
        .niche
        .chars()
        .map(|c| {
            if "\\^$.|?*+()[]{}\"".contains(c) {
                '.'
            } else {
                c
            }
        })
        .collect();
    let state = match &input.state {
        Some(state) => format!(
            "area[\"name\"=\"{}\"][\"admin_level\"=\"4\"]->.s;\narea[\"name\"=\"{}\"](area.s)->.c;\n",
            quote(state),
            quote(&input.city)
        ),
        None => format!("area[\"name\"=\"{}\"]->.c;\n", quote(&input.city)),
    };
    format!(
        "[out:json][timeout:{}];\n{state}nwr(area.c)[\"name\"][~\"^(name|shop|craft|office|amenity|healthcare)$\"~\"{niche}\",i];\nout center {limit};",
        timeout.as_secs().max(1)
    )
}

#[async_trait]
impl Tool for Places {
    fn name(&self) -> &str {
        "places.search"
    }
    fn description(&self) -> &str {
        "Businesses of a kind in a city (Google Places Text Search or OpenStreetMap Overpass, per [places] in weft.toml)."
    }
    fn input_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "required": ["niche", "city"],
            "additionalProperties": false,
            "properties": {
                "niche": {"type": "string", "description": "The kind of business, e.g. HVAC."},
                "city": {"type": "string"},
                "state": {"type": ["string", "null"], "description": "A US state, to tell Springfields apart."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 60}
            }
        }))
    }
    async fn call(&self, input: Value, ctx: &Context) -> Result<Value> {
        let input: Input = parse_input("places.search", &input)?;
        if input.niche.trim().is_empty() || input.city.trim().is_empty() {
            return Err(Error::Input(
                "places.search: `niche` and `city` must not be empty".into(),
            ));
        }
        let limit = input
            .limit
            .unwrap_or(self.config.max_results)
            .clamp(1, self.config.max_results.max(1));
        let places = match self.config.provider {
            Provider::Google => self.google(&input, limit, ctx).await?,
            Provider::Overpass => self.overpass(&input, limit, ctx).await?,
        };
        serde_json::to_value(places).map_err(|e| Error::Permanent(format!("places.search: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overpass_query_escapes_what_it_quotes() {
        let input = Input {
            niche: "HVAC (A+)\"".into(),
            city: "Fort \"Collins".into(),
            state: Some("Colorado".into()),
            limit: None,
        };
        let q = overpass_query(&input, 10, Duration::from_secs(25));
        assert!(
            q.contains("area[\"name\"=\"Fort Collins\"](area.s)->.c;"),
            "{q}"
        );
        assert!(q.contains("~\"HVAC .A...\",i]"), "{q}");
        assert!(q.ends_with("out center 10;"));
    }
}

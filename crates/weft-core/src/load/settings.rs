//! The per-step policies (`retry`, `timeout`, `cache`, `token`, `continue_on_error`,
//! `strategy`) that a step and the template's `defaults:` both write, and how they combine.
//!
//! A step's own value wins over `defaults`, field by field for `retry` and `token`, so
//! `defaults: {retry: {backoff: ..}}` plus a step's `retry: {max_attempts: 5}` keeps the backoff.

use std::num::NonZeroU32;
use std::time::Duration;

use super::read::{Report, get};
use super::yaml::{Node, Pos};
use crate::diag::Code;
use crate::plan::{Backoff, RetryPolicy, Strategy, TokenSpec};

/// The keys this module reads, in a step or in `defaults`.
pub(crate) const KEYS: &[&str] = &[
    "retry",
    "timeout",
    "cache",
    "token",
    "continue_on_error",
    "strategy",
];

/// The hard cap on a per-task credential's life.
const TOKEN_TTL_CAP: Duration = crate::plan::TokenSpec::MAX_TTL;
/// A token's life when neither the step nor `defaults` says.
const TOKEN_TTL_DEFAULT: Duration = crate::plan::TokenSpec::DEFAULT_TTL;
/// A step's per-attempt timeout when neither the step nor `defaults` says.
const TIMEOUT_DEFAULT: Duration = Duration::from_secs(5 * 60);

/// Policies as written in one place; `None` = not written there.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub max_attempts: Option<NonZeroU32>,
    pub backoff: Option<Backoff>,
    pub timeout: Option<Duration>,
    pub cache_ttl: Option<Duration>,
    /// `token:` was written (even empty).
    pub token: bool,
    pub token_ttl: Option<Duration>,
    pub token_scopes: Option<Vec<String>>,
    pub continue_on_error: Option<bool>,
    pub strategy: Option<(Strategy, Pos)>,
}

/// The policies a step ends up with.
pub(crate) struct Resolved {
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub cache_ttl: Option<Duration>,
    pub token: Option<TokenSpec>,
    pub continue_on_error: bool,
    /// The strategy written, if any; the caller decides the rest from the tool.
    pub strategy: Option<(Strategy, Pos)>,
}

impl Settings {
    /// Reads the policy keys of a mapping whose other keys the caller checks.
    pub fn read(report: &mut Report, entries: &[(Node, Node)]) -> Settings {
        let mut s = Settings::default();
        if let Some(node) = get(entries, "retry") {
            read_retry(report, node, &mut s);
        }
        if let Some(node) = get(entries, "timeout") {
            s.timeout = report.duration(node, "`timeout`");
        }
        if let Some(node) = get(entries, "cache")
            && let Some(cache) = report.mapping(node, &["ttl"], "`cache`")
        {
            match get(cache, "ttl") {
                Some(ttl) => s.cache_ttl = report.duration(ttl, "`cache.ttl`"),
                None => report.at(
                    node.pos,
                    Code::MissingKey,
                    "`cache` needs a `ttl`, e.g. `cache: {ttl: 24h}`",
                ),
            }
        }
        if let Some(node) = get(entries, "token") {
            read_token(report, node, &mut s);
        }
        if let Some(node) = get(entries, "continue_on_error") {
            s.continue_on_error = report.boolean(node, "`continue_on_error`");
        }
        if let Some(node) = get(entries, "strategy") {
            match node.as_str() {
                Some("sync") => s.strategy = Some((Strategy::Sync, node.pos)),
                Some("queue") => s.strategy = Some((Strategy::Queue, node.pos)),
                _ => report.at(
                    node.pos,
                    Code::InvalidValue,
                    format!(
                        "`strategy` must be `sync` or `queue`, not {}",
                        super::read::describe(node)
                    ),
                ),
            }
        }
        s
    }

    /// This step's settings over the template's defaults.
    pub fn resolve(&self, defaults: &Settings) -> Resolved {
        let token = (self.token || defaults.token).then(|| TokenSpec {
            ttl: self
                .token_ttl
                .or(defaults.token_ttl)
                .unwrap_or(TOKEN_TTL_DEFAULT),
            scopes: self
                .token_scopes
                .clone()
                .or_else(|| defaults.token_scopes.clone())
                .unwrap_or_else(crate::plan::TokenSpec::default_scopes),
        });
        Resolved {
            retry: RetryPolicy {
                max_attempts: self
                    .max_attempts
                    .or(defaults.max_attempts)
                    .unwrap_or(NonZeroU32::MIN),
                backoff: self
                    .backoff
                    .clone()
                    .or_else(|| defaults.backoff.clone())
                    .unwrap_or_default(),
            },
            timeout: Some(self.timeout.or(defaults.timeout).unwrap_or(TIMEOUT_DEFAULT)),
            cache_ttl: self.cache_ttl.or(defaults.cache_ttl),
            token,
            continue_on_error: self
                .continue_on_error
                .or(defaults.continue_on_error)
                .unwrap_or(false),
            strategy: self.strategy.or(defaults.strategy),
        }
    }
}

fn read_retry(report: &mut Report, node: &Node, s: &mut Settings) {
    let Some(retry) = report.mapping(node, &["max_attempts", "backoff"], "`retry`") else {
        return;
    };
    if let Some(n) = get(retry, "max_attempts") {
        s.max_attempts = report.positive(n, "`retry.max_attempts`");
    }
    if let Some(b) = get(retry, "backoff") {
        s.backoff = read_backoff(report, b);
    }
}

fn read_backoff(report: &mut Report, node: &Node) -> Option<Backoff> {
    let known = ["type", "initial", "delay", "factor", "max", "jitter"];
    let entries = report.mapping(node, &known, "`backoff`")?;
    let Backoff::Exponential {
        initial: default_initial,
        factor: default_factor,
        max: default_max,
        jitter: default_jitter,
    } = Backoff::default()
    else {
        return None;
    };
    let fixed = match get(entries, "type") {
        None => false,
        Some(t) => match t.as_str() {
            Some("exponential") => false,
            Some("fixed") => true,
            _ => {
                report.at(
                    t.pos,
                    Code::InvalidValue,
                    format!(
                        "`backoff.type` must be `exponential` or `fixed`, not {}",
                        super::read::describe(t)
                    ),
                );
                return None;
            }
        },
    };
    let duration = |report: &mut Report, key: &str| {
        get(entries, key).and_then(|n| report.duration(n, &format!("`backoff.{key}`")))
    };
    let jitter = get(entries, "jitter")
        .and_then(|n| report.boolean(n, "`backoff.jitter`"))
        .unwrap_or(default_jitter);
    if fixed {
        for key in ["factor", "max"] {
            if let Some((k, _)) = entries.iter().find(|(k, _)| k.as_str() == Some(key)) {
                report.at(
                    k.pos,
                    Code::InvalidValue,
                    format!("`{key}` applies only to `type: exponential` backoff"),
                );
            }
        }
        let delay = duration(report, "delay")
            .or_else(|| duration(report, "initial"))
            .unwrap_or(default_initial);
        return Some(Backoff::Fixed { delay, jitter });
    }
    if let Some((k, _)) = entries.iter().find(|(k, _)| k.as_str() == Some("delay")) {
        report.at(
            k.pos,
            Code::InvalidValue,
            "`delay` applies only to `type: fixed` backoff; exponential backoff starts at `initial`",
        );
    }
    let factor = match get(entries, "factor") {
        None => default_factor,
        Some(n) => match report.number(n, "`backoff.factor`") {
            Some(f) if f >= 1.0 => f,
            Some(_) => {
                report.at(
                    n.pos,
                    Code::InvalidValue,
                    "`backoff.factor` must be at least 1",
                );
                default_factor
            }
            None => default_factor,
        },
    };
    Some(Backoff::Exponential {
        initial: duration(report, "initial").unwrap_or(default_initial),
        factor,
        max: duration(report, "max").unwrap_or(default_max),
        jitter,
    })
}

fn read_token(report: &mut Report, node: &Node, s: &mut Settings) {
    let Some(token) = report.mapping(node, &["ttl", "scopes"], "`token`") else {
        return;
    };
    s.token = true;
    if let Some(ttl_node) = get(token, "ttl")
        && let Some(ttl) = report.duration(ttl_node, "`token.ttl`")
    {
        if ttl > TOKEN_TTL_CAP {
            report.at(
                ttl_node.pos,
                Code::InvalidValue,
                format!(
                    "`token.ttl` of {} is over the hard cap 30m",
                    crate::duration::format(ttl)
                ),
            );
        } else {
            s.token_ttl = Some(ttl);
        }
    }
    if let Some(scopes) = get(token, "scopes")
        && let Some(list) = report.string_list(scopes, "`token.scopes`")
    {
        let mut kept = Vec::new();
        for (scope, pos) in list {
            if crate::plan::TokenSpec::valid_scope(&scope) {
                kept.push(scope);
            } else {
                report.at(
                    pos,
                    Code::InvalidValue,
                    format!(
                        "unknown token scope `{scope}`; scopes are `progress`, \
                         `artifacts:write`, `memory:read`, `memory:write` and `secret:NAME`"
                    ),
                );
            }
        }
        s.token_scopes = Some(kept);
    }
}

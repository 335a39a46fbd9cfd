//! The conformance suite: the cases in `fixtures/`, one file each, run through a [`Driver`].
//!
//! [`check`] runs one case; [`run`] runs a directory of them and reports one line per case. The
//! [`CoreDriver`] carries out the core's lifecycle operations itself, with no I/O; the [`UreqDriver`] and
//! the [`AsyncDriver`] run the same files through the blocking and the async adapter's sessions over real
//! HTTP against the mock ERP.net in scripted mode. Every driver runs every case: none is skipped.

// The client's one error type wraps its phases' typed errors unboxed (the crates allow this lint too).
#![allow(clippy::result_large_err)]

mod adapter;
mod async_driver;
mod case;
mod core_driver;
mod driver;
mod message;
mod oidc;
mod outcome;
mod ureq_driver;

pub use async_driver::AsyncDriver;
pub use case::{Case, DEFAULT_NOW, Step, load};
pub use core_driver::CoreDriver;
pub use driver::{
    AuthorizeParams, CallOutcome, Driver, Exchange, Harness, Listened, Reply, Setup, StoreEvent, TokensView,
    Wire,
};
pub use message::{Body, Message, parse_request, parse_response};
pub use ureq_driver::UreqDriver;

use base64::Engine as _;
use case::{TokensExpect, substitute};
use erpnet_oauth_core::listener::ReceivedCallback;
use serde::Deserialize as _;
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `fixtures/` directory of this workspace.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fixtures")
}

/// Runs one case with `driver`. `Err` says what went wrong, first difference only.
pub fn check(case: &Case, driver: &mut dyn Driver) -> Result<(), String> {
    let mut vars = case.vars.clone();
    vars.entry(INSTANCE.to_owned()).or_insert_with(|| case.client.instance.clone());
    for (name, claims) in &case.jwt {
        vars.insert(name.clone(), unsigned_jwt(claims)?);
    }
    let mut now = at(case.now);
    let setup = Setup {
        client: case.client.clone(),
        now,
        random: case.random.clone(),
        tokens: case.tokens.as_ref().map(|t| stored(t, &vars)).transpose()?,
        manager: case.manager.clone(),
    };
    match (driver.start(&setup).map_err(|e| format!("setup: {e}"))?, &case.config_error) {
        (Ok(()), None) => {}
        (Ok(()), Some(e)) => return Err(format!("expected the configuration to be refused with {e}")),
        (Err(refused), expected) => {
            return outcome_error(&refused, expected.as_deref()).map_err(|e| format!("configuration: {e}"));
        }
    }
    for (i, raw) in case.steps.iter().enumerate() {
        let kind = raw.get("do").and_then(|d| d.as_str()).unwrap_or("?");
        let fail = |e: String| format!("step {} ({kind}): {e}", i + 1);
        let resolved = substitute(raw, &vars).map_err(fail)?;
        let step = Step::deserialize(resolved).map_err(|e| fail(case::one_line(&e.to_string())))?;
        run_step(step, driver, &mut vars, &mut now).map_err(fail)?;
    }
    Ok(())
}

/// The stored tokens with their `${name}` references resolved.
fn stored(t: &case::StoredTokens, vars: &BTreeMap<String, String>) -> Result<case::StoredTokens, String> {
    let s = |v: &str| case::substitute_str(v, vars).map_err(|e| format!("tokens: {e}"));
    let o = |v: &Option<String>| v.as_deref().map(s).transpose();
    Ok(case::StoredTokens {
        access_token: s(&t.access_token)?,
        refresh_token: o(&t.refresh_token)?,
        id_token: o(&t.id_token)?,
        scopes: o(&t.scopes)?,
        ..t.clone()
    })
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn run_step(
    step: Step,
    driver: &mut dyn Driver,
    vars: &mut BTreeMap<String, String>,
    now: &mut SystemTime,
) -> Result<(), String> {
    match step {
        Step::Authorize {
            login,
            response_type,
            scope,
            state,
            nonce,
            without_nonce,
            pkce,
            prompt,
            response_mode,
            extra,
            request,
            url,
            error,
        } => {
            if request.is_none() && url.is_none() && error.is_none() {
                return Err("an authorize step checks a request, a url or an error".to_owned());
            }
            let params = AuthorizeParams {
                response_type,
                scope,
                state,
                nonce,
                without_nonce,
                pkce,
                prompt,
                response_mode,
                extra,
            };
            match (driver.authorize(&login, &params)?, error) {
                (Ok(actual_url), None) => {
                    if let Some(expected) = url {
                        message::matches(&expected, &actual_url, vars).map_err(|e| format!("url: {e}"))?;
                    }
                    if let Some(expected) = request {
                        let expected = parse_request(&expected)?;
                        let actual = message::from_url(&actual_url)?;
                        message::compare(&expected, &actual, &[], vars)?;
                    }
                    Ok(())
                }
                (Ok(_), Some(e)) => Err(format!("expected the error {e}, the request was built")),
                (Err(actual), expected) => outcome_error(&actual, expected.as_deref()),
            }
        }
        Step::Callback { login, request, error } => {
            let request = parse_request(&request)?;
            match (driver.callback(&login, &request)?, error) {
                (Ok(()), None) => Ok(()),
                (Ok(()), Some(e)) => Err(format!("the callback was accepted; expected the error {e}")),
                (Err(actual), expected) => outcome_error(&actual, expected.as_deref()),
            }
        }
        Step::Listen { login, requests, callback } => listen(driver, &login, &requests, callback.as_ref()),
        Step::Exchange { login, wire, error, store, tokens } => {
            let wire = make_wire(&wire, vars, driver)?;
            let result = driver.exchange(&login, &wire)?;
            *vars = wire.finish()?;
            match (result, error) {
                (Ok(_), None) => {}
                (Ok(_), Some(e)) => return Err(format!("expected the error {e}, the exchange succeeded")),
                (Err(actual), expected) => outcome_error(&actual, expected.as_deref())?,
            }
            // A login's save is checked here when the case says, and never left for a later step.
            match store {
                Some(expected) => check_store(driver, Some(&expected))?,
                None => drop(driver.take_store_events()),
            }
            check_tokens(driver, tokens.as_ref())
        }
        Step::ApiCall { target, count, wire, error, retryable, login_required, store, tokens } => {
            let request = api_request(&target, driver_instance(vars))?;
            let wire = make_wire(&wire, vars, driver)?;
            let outcomes = driver.api_calls(&request, count, &wire)?;
            *vars = wire.finish()?;
            if outcomes.len() != count {
                return Err(format!("{count} calls made, {} ended", outcomes.len()));
            }
            for (i, outcome) in outcomes.iter().enumerate() {
                let which = if count > 1 { format!("call {}: ", i + 1) } else { String::new() };
                match (outcome, &error) {
                    (CallOutcome::Ok, None) => {}
                    (CallOutcome::Ok, Some(e)) => {
                        return Err(format!("{which}expected {e}, the call succeeded"));
                    }
                    (CallOutcome::Failed { error: actual, retryable: r, login_required: l }, expected) => {
                        outcome_error(actual, expected.as_deref()).map_err(|e| format!("{which}{e}"))?;
                        if retryable.is_some_and(|want| want != *r) {
                            return Err(format!("{which}retryable is {r}"));
                        }
                        if login_required.is_some_and(|want| want != *l) {
                            return Err(format!("{which}login_required is {l}"));
                        }
                    }
                }
            }
            check_store(driver, store.as_deref())?;
            check_tokens(driver, tokens.as_ref())
        }
        Step::Tick { seconds } => {
            *now += Duration::from_secs(seconds);
            driver.tick(*now);
            Ok(())
        }
        Step::Timeout { due, wire, error, store, tokens } => {
            let actual =
                driver.next_timeout().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs());
            match due {
                None => {}
                Some(toml::Value::Integer(n)) if Some(n) == actual.and_then(|a| i64::try_from(a).ok()) => {}
                Some(toml::Value::String(s)) if s == "none" && actual.is_none() => {}
                Some(expected) => {
                    return Err(format!("the timer is due at {actual:?}, expected {expected}"));
                }
            }
            let wire = make_wire(&wire, vars, driver)?;
            let result = driver.timeout(&wire)?;
            *vars = wire.finish()?;
            match (result, error) {
                (Ok(()), None) => {}
                (Ok(()), Some(e)) => {
                    return Err(format!("expected the error {e}, the timer's renewal succeeded"));
                }
                (Err(actual), expected) => outcome_error(&actual, expected.as_deref())?,
            }
            check_store(driver, store.as_deref())?;
            check_tokens(driver, tokens.as_ref())
        }
        Step::SharedStore { tokens, clear } => match (tokens, clear) {
            (Some(t), false) => driver.shared_store(Some(&stored(&t, vars)?), *now),
            (None, true) => driver.shared_store(None, *now),
            _ => Err("a shared_store step writes tokens or clears, one of the two".to_owned()),
        },
        Step::Assert { distinct, equal, pkce_s256 } => {
            for (i, a) in distinct.iter().enumerate() {
                if distinct.iter().skip(i + 1).any(|b| a == b) {
                    return Err(format!("`{a}` appears twice among values that must differ"));
                }
            }
            if let Some(first) = equal.first()
                && let Some(other) = equal.iter().find(|v| *v != first)
            {
                return Err(format!("`{first}` and `{other}` differ"));
            }
            if let Some(p) = pkce_s256 {
                if !message::is_pkce_verifier(&p.verifier) {
                    return Err(format!("`{}` is not an RFC 7636 code verifier", p.verifier));
                }
                let digest = sha2::Sha256::digest(p.verifier.as_bytes());
                let want = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
                if want != p.challenge {
                    return Err(format!(
                        "the challenge `{}` is not S256 of the verifier (`{want}`)",
                        p.challenge
                    ));
                }
            }
            Ok(())
        }
        Step::Oidc(step) => oidc::run_step(step, driver, vars),
    }
}

/// A listen step: every request answered with its status, and the last one (only) the callback that ended
/// the wait, as the case gives it; without a callback, none ended it.
fn listen(
    driver: &mut dyn Driver,
    login: &str,
    requests: &[case::ListenRequest],
    callback: Option<&case::ListenedCallback>,
) -> Result<(), String> {
    if requests.is_empty() {
        return Err("a listen step sends at least one request".to_owned());
    }
    let raw: Vec<Vec<u8>> = requests.iter().map(|r| case::raw_request(&r.request)).collect();
    let listened = driver.listen(login, &raw)?;
    let ended_at = listened.callback.as_ref().map(|(at, _)| *at);
    for (i, want) in requests.iter().enumerate() {
        let n = i + 1;
        match listened.statuses.get(i) {
            Some(got) if *got == want.status => {}
            Some(got) => return Err(format!("request {n} was answered {got}, expected {}", want.status)),
            None => {
                let by = ended_at.map(|at| format!("request {}", at + 1)).unwrap_or_else(|| "?".to_owned());
                return Err(format!("request {n} was not sent: the wait had ended with {by}"));
            }
        }
    }
    let last = requests.len() - 1;
    let (at, got) = match (listened.callback, callback) {
        (None, None) => return Ok(()),
        (None, Some(_)) => return Err("no request ended the wait; expected the last".to_owned()),
        (Some((at, got)), Some(_)) if at == last => (at, got),
        (Some((at, got)), _) => {
            return Err(format!(
                "request {} ended the wait with {got:?}; expected {}",
                at + 1,
                match callback {
                    Some(_) => "the last",
                    None => "none",
                }
            ));
        }
    };
    let expected = match callback.map(|c| (&c.query, &c.form_post)) {
        Some((Some(q), None)) => ReceivedCallback::Query(q.clone()),
        Some((None, Some(f))) => ReceivedCallback::FormPost(f.clone().into_bytes()),
        _ => return Err("a listen step's callback is a query or a form_post, one of the two".to_owned()),
    };
    if got != expected {
        let show = |c: &ReceivedCallback| match c {
            ReceivedCallback::Query(q) => format!("the query `{q}`"),
            ReceivedCallback::FormPost(b) => format!("the form body `{}`", String::from_utf8_lossy(b)),
        };
        return Err(format!(
            "request {} ended the wait with {}, expected {}",
            at + 1,
            show(&got),
            show(&expected)
        ));
    }
    Ok(())
}

/// The instance the API targets are resolved against: the `instance` value, set by [`check`].
fn driver_instance(vars: &BTreeMap<String, String>) -> &str {
    vars.get(INSTANCE).map(String::as_str).unwrap_or_default()
}

/// The value every case has: `${instance}`, the client's instance URL.
const INSTANCE: &str = "instance";

fn api_request(target: &str, instance: &str) -> Result<http::Request<()>, String> {
    let (method, path) =
        target.split_once(' ').ok_or_else(|| format!("target `{target}` is not `METHOD path`"))?;
    let url = if path.starts_with("http://") || path.starts_with("https://") {
        path.to_owned()
    } else {
        format!("{}{path}", instance.trim_end_matches('/'))
    };
    http::Request::builder().method(method).uri(url).body(()).map_err(|e| format!("target `{target}`: {e}"))
}

fn make_wire(
    specs: &[case::Wire],
    vars: &BTreeMap<String, String>,
    driver: &dyn Driver,
) -> Result<Wire, String> {
    let mut script = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let expected = parse_request(&spec.request).map_err(|e| format!("wire {}: request: {e}", i + 1))?;
        let reply = match (&spec.response, &spec.transport_error) {
            (Some(r), None) => {
                let mut r = parse_response(r).map_err(|e| format!("wire {}: response: {e}", i + 1))?;
                if let Some(size) = spec.body_size {
                    if size < r.body().len() {
                        return Err(format!("wire {}: body_size is smaller than the body", i + 1));
                    }
                    r.body_mut().resize(size, b' ');
                }
                Reply::Response(r)
            }
            (None, Some(reason)) => Reply::TransportError(reason.clone()),
            _ => return Err(format!("wire {}: give either a response or a transport_error", i + 1)),
        };
        script.push(Exchange { expected, reply });
    }
    Ok(Wire::new(script, vars.clone(), driver.transport_headers()))
}

/// Compares an error's `Debug` with the expected one (`None`: no error was expected).
fn outcome_error(actual: &str, expected: Option<&str>) -> Result<(), String> {
    match expected {
        Some(e) if e.trim() == actual => Ok(()),
        Some(e) => Err(format!("expected the error {}, got {actual}", e.trim())),
        None => Err(format!("unexpected error {actual}")),
    }
}

fn check_store(driver: &mut dyn Driver, expected: Option<&[String]>) -> Result<(), String> {
    let events: Vec<&str> = driver
        .take_store_events()
        .iter()
        .map(|e| match e {
            StoreEvent::Save(_) => "save",
            StoreEvent::Clear => "clear",
        })
        .collect();
    let expected: Vec<&str> = expected.unwrap_or_default().iter().map(String::as_str).collect();
    if events != expected {
        return Err(format!("the store was asked {events:?}, expected {expected:?}"));
    }
    Ok(())
}

fn check_tokens(driver: &dyn Driver, expected: Option<&TokensExpect>) -> Result<(), String> {
    let Some(expected) = expected else { return Ok(()) };
    let actual = driver.tokens();
    let actual = match (actual, expected.present) {
        (None, false) => return Ok(()),
        (Some(_), false) => return Err("tokens are still held".to_owned()),
        (None, true) => return Err("no tokens are held".to_owned()),
        (Some(a), true) => a,
    };
    let opt = |what: &str, want: &Option<String>, got: &Option<String>| -> Result<(), String> {
        match want.as_deref() {
            None => Ok(()),
            Some("none") if got.is_none() => Ok(()),
            Some(w) if got.as_deref() == Some(w) => Ok(()),
            Some(w) => Err(format!("{what} is {:?}, expected `{w}`", got.as_deref().map(short))),
        }
    };
    if let Some(at) = &expected.access_token
        && *at != actual.access_token
    {
        return Err(format!(
            "the access token is `{}`, expected `{}`",
            short(&actual.access_token),
            short(at)
        ));
    }
    opt("the refresh token", &expected.refresh_token, &actual.refresh_token)?;
    opt("the ID token", &expected.id_token, &actual.id_token)?;
    match &expected.expires_at {
        None => {}
        Some(toml::Value::Integer(n))
            if actual.expires_at.and_then(|a| i64::try_from(a).ok()) == Some(*n) => {}
        Some(toml::Value::String(s)) if s == "none" && actual.expires_at.is_none() => {}
        Some(want) => return Err(format!("the tokens expire at {:?}, expected {want}", actual.expires_at)),
    }
    if let Some(scopes) = &expected.scopes {
        let mut want: Vec<&str> = scopes.split(' ').filter(|s| !s.is_empty()).collect();
        want.sort_unstable();
        want.dedup();
        if want != actual.scopes {
            return Err(format!("the scopes are {:?}, expected {want:?}", actual.scopes));
        }
    }
    Ok(())
}

fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// An unsigned JWT (signature bytes `signature`) with these claims: for cases that compare claims
/// without verifying signatures.
fn unsigned_jwt(claims: &toml::Table) -> Result<String, String> {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let payload = serde_json::to_vec(claims).map_err(|e| format!("jwt claims: {e}"))?;
    Ok(format!("{}.{}.{}", b64(br#"{"alg":"RS256","typ":"JWT"}"#), b64(&payload), b64(b"signature")))
}

/// How one case ended with one driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every step gave what the case expects.
    Pass,
    /// The first difference.
    Fail(String),
}

/// One case's result with one driver.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The driver's name (`core`, `ureq`).
    pub driver: &'static str,
    /// The case id.
    pub id: String,
    /// How it ended.
    pub verdict: Verdict,
}

/// The result of running a directory of cases with one or several drivers.
#[derive(Debug, Default)]
pub struct Report {
    /// Each case's result, per driver, in file-name order.
    pub results: Vec<CaseResult>,
    /// How many case files matched the filter (each must yield a result per driver).
    pub files: usize,
}

impl Report {
    fn count(&self, f: impl Fn(&Verdict) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.verdict)).count()
    }

    /// How many cases passed.
    pub fn passed(&self) -> usize {
        self.count(|v| *v == Verdict::Pass)
    }

    /// How many cases failed.
    pub fn failed(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Fail(_)))
    }

    /// The results of driver `name`.
    pub fn of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a CaseResult> + 'a {
        self.results.iter().filter(move |r| r.driver == name)
    }

    /// Appends another run's results (another driver over the same files).
    pub fn extend(&mut self, other: Report) {
        self.files = self.files.max(other.files);
        self.results.extend(other.results);
    }

    /// The drivers that ran, in order of their first result.
    pub fn drivers(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for r in &self.results {
            if !names.contains(&r.driver) {
                names.push(r.driver);
            }
        }
        names
    }

    /// One line per case and driver (`PASS [core] id`, `FAIL [ureq] id: why`), then one per driver
    /// (`[ureq] N passed, M failed`), then the totals: `N passed, M failed`.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .results
            .iter()
            .map(|r| match &r.verdict {
                Verdict::Pass => format!("PASS [{}] {}", r.driver, r.id),
                Verdict::Fail(why) => format!("FAIL [{}] {}: {}", r.driver, r.id, case::one_line(why)),
            })
            .collect();
        for name in self.drivers() {
            let passed = self.of(name).filter(|r| r.verdict == Verdict::Pass).count();
            let failed = self.of(name).count() - passed;
            out.push(format!("[{name}] {passed} passed, {failed} failed"));
        }
        out.push(format!("{} passed, {} failed", self.passed(), self.failed()));
        out
    }
}

/// The case files in `dir` whose name contains `filter`, sorted.
pub fn case_files(dir: &Path, filter: Option<&str>) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            filter.is_none_or(|f| stem.contains(f))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Runs every case in `dir` whose name contains `filter`, each with a fresh driver from `make`.
pub fn run(
    dir: &Path,
    filter: Option<&str>,
    make: &mut dyn FnMut() -> Box<dyn Driver>,
) -> Result<Report, String> {
    let files = case_files(dir, filter)?;
    let mut report = Report { files: files.len(), ..Report::default() };
    for path in files {
        let id = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let mut driver = make();
        let verdict = match load(&path) {
            Err(e) => Verdict::Fail(e),
            Ok(case) => match check(&case, driver.as_mut()) {
                Ok(()) => Verdict::Pass,
                Err(e) => Verdict::Fail(e),
            },
        };
        report.results.push(CaseResult { driver: driver.name(), id, verdict });
    }
    Ok(report)
}

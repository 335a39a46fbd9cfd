//! The core, fed directly: requests go to the [`Wire`] as the core builds them, and the wire's canned
//! answers come straight back into the core. The clock is the case's; the random bytes are the case's.

use super::driver::{
    AuthorizeParams, CallOutcome, Driver, Harness, Reply, Setup, StoreEvent, TokensView, Wire,
};
use super::message::Message;
use erpnet_oauth_core::{
    Access, AccessToken, ApiError, ApiOutcome, AuthMethod, AuthorizationRequest, Callback, ClientConfig,
    ClientSecret, CodeExchange, IdToken, ManagerOptions, Output, PendingLogin, RandomError, RandomSource,
    RefreshError, RefreshToken, Renewal, ResponseMode, ResponseType, Scopes, SeededRandom, TokenManager,
    TokenSet,
};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod oidc;

/// Runs cases against `erpnet-oauth-core` with no I/O at all.
#[derive(Debug, Default)]
pub struct CoreDriver {
    run: Option<Run>,
}

#[derive(Debug)]
struct Run {
    client: ClientConfig,
    now: SystemTime,
    rng: Random,
    logins: BTreeMap<String, Slot>,
    manager: TokenManager,
    store: Vec<StoreEvent>,
    oidc: oidc::State,
}

#[derive(Debug)]
enum Slot {
    Pending(PendingLogin),
    Code(CodeExchange),
}

/// The case's random bytes: a seeded stream, or fixed bytes that run out.
#[derive(Debug)]
pub(super) enum Random {
    Seeded(SeededRandom),
    Fixed(Vec<u8>),
}

impl RandomSource for Random {
    fn fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        match self {
            Random::Seeded(s) => s.fill_bytes(dest),
            Random::Fixed(bytes) if bytes.len() >= dest.len() => {
                let rest = bytes.split_off(dest.len());
                dest.copy_from_slice(bytes);
                *bytes = rest;
                Ok(())
            }
            Random::Fixed(_) => Err(RandomError("the case's random bytes are used up".to_owned())),
        }
    }
}

impl Random {
    /// The case's random source.
    pub(super) fn from_spec(spec: &super::case::RandomSpec) -> Harness<Random> {
        Ok(match (&spec.hex, spec.seed) {
            (Some(h), _) => Random::Fixed(hex(h)?),
            (None, seed) => Random::Seeded(SeededRandom::new(seed.unwrap_or(0))),
        })
    }
}

impl CoreDriver {
    /// A driver with no case started.
    pub fn new() -> Self {
        CoreDriver::default()
    }

    fn run(&mut self) -> Harness<&mut Run> {
        self.run.as_mut().ok_or_else(|| "no case started".to_owned())
    }
}

pub(super) fn unix(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

pub(super) fn view(t: &TokenSet) -> TokensView {
    TokensView {
        access_token: t.access_token.secret().to_owned(),
        refresh_token: t.refresh_token.as_ref().map(|r| r.secret().to_owned()),
        id_token: t.id_token.as_ref().map(|i| i.secret().to_owned()),
        expires_at: t.expires_at.and_then(unix),
        scopes: t.scopes.iter().map(str::to_owned).collect(),
    }
}

pub(super) fn hex(s: &str) -> Harness<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.len() % 2 != 0 {
        return Err("random.hex has an odd number of digits".to_owned());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).unwrap_or("xx"), 16).map_err(|e| format!("random.hex: {e}"))
        })
        .collect()
}

/// The case's client configuration as the core builds it.
pub(super) fn build_client(setup: &Setup) -> Harness<Result<ClientConfig, String>> {
    build_client_at(setup, &setup.client.instance)
}

/// The case's client configuration with another instance URL (an adapter's driver points it at a
/// local server).
pub(super) fn build_client_at(setup: &Setup, instance: &str) -> Harness<Result<ClientConfig, String>> {
    let spec = &setup.client;
    let mut b = ClientConfig::builder(instance, &spec.client_id);
    if let Some(s) = &spec.client_secret {
        b = b.client_secret(ClientSecret::new(s.as_str()));
    }
    if let Some(m) = &spec.auth_method {
        b = b.auth_method(match m.as_str() {
            "client_secret_post" => AuthMethod::ClientSecretPost,
            "client_secret_basic" => AuthMethod::ClientSecretBasic,
            "none" => AuthMethod::None,
            other => return Err(format!("unknown auth_method `{other}`")),
        });
    }
    if let Some(r) = &spec.redirect_uri {
        b = b.redirect_uri(r);
    }
    if let Some(i) = &spec.issuer {
        b = b.issuer(i);
    }
    b = b.iss_parameter_supported(spec.iss_parameter_supported);
    // The inner `Err`: the core refuses the configuration (catalogue H4...), the error's `Debug`.
    Ok(b.build().map_err(|e| format!("{e:?}")))
}

pub(super) fn stored_tokens(setup: &Setup) -> Option<TokenSet> {
    let t = setup.tokens.as_ref()?;
    let expires_at = match (t.expires_at, t.expires_in) {
        (Some(at), _) => UNIX_EPOCH.checked_add(Duration::from_secs(at)),
        (None, Some(d)) if d >= 0 => setup.now.checked_add(Duration::from_secs(d.unsigned_abs())),
        (None, Some(d)) => setup.now.checked_sub(Duration::from_secs(d.unsigned_abs())),
        (None, None) => None,
    };
    Some(TokenSet {
        access_token: AccessToken::new(t.access_token.as_str()),
        expires_at,
        issued_at: None,
        refresh_token: t.refresh_token.as_deref().map(RefreshToken::new),
        id_token: t.id_token.as_deref().map(IdToken::new),
        scopes: t.scopes.as_deref().map(Scopes::parse).unwrap_or_default(),
    })
}

pub(super) fn options(setup: &Setup) -> Harness<ManagerOptions> {
    let mut o = ManagerOptions::default();
    if let Some(s) = setup.manager.skew {
        o.skew = Duration::from_secs(s);
    }
    match setup.manager.renewal.as_deref() {
        None | Some("refresh_token") => {}
        Some("client_credentials") => {
            let scopes = Scopes::parse(setup.manager.scopes.as_deref().unwrap_or_default());
            o.renewal = Renewal::ClientCredentials { scopes };
        }
        Some(other) => return Err(format!("unknown renewal `{other}`")),
    }
    Ok(o)
}

fn refresh_failure(e: &RefreshError) -> CallOutcome {
    CallOutcome::Failed {
        error: format!("{e:?}"),
        retryable: e.is_retryable(),
        login_required: e.is_login_required(),
    }
}

fn api_failure(e: &ApiError) -> CallOutcome {
    CallOutcome::Failed {
        error: format!("{e:?}"),
        retryable: matches!(e, ApiError::RateLimited { .. }),
        login_required: false,
    }
}

impl Run {
    /// Drains the manager's outputs: renewals go over the wire, new tokens to the (always successful)
    /// store. Returns whether there was anything to do.
    fn drain(&mut self, wire: &Wire) -> Harness<bool> {
        let mut any = false;
        while let Some(output) = self.manager.poll_output() {
            any = true;
            match output {
                Output::Refresh { id, request } => match wire.send(&request) {
                    Reply::Response(r) => self.manager.handle_refresh_response(id, &r, self.now),
                    Reply::TransportError(e) => self.manager.handle_refresh_failure(id, &e, self.now),
                },
                // A refreshed ID token needs the issuer's keys (catalogue E11).
                Output::FetchKeys { id, request } => match wire.send(&request) {
                    Reply::Response(r) => self.manager.handle_keys_response(id, Ok(&r), self.now),
                    Reply::TransportError(e) => {
                        self.manager.handle_keys_response::<Vec<u8>>(id, Err(&e), self.now)
                    }
                },
                Output::Persist { id, tokens } => {
                    self.store.push(StoreEvent::Save(view(&tokens)));
                    self.manager.handle_persisted(id, Ok(()), self.now);
                }
                Output::Clear => self.store.push(StoreEvent::Clear),
                other => return Err(format!("an output the driver does not know: {other:?}")),
            }
        }
        Ok(any)
    }
}

impl Driver for CoreDriver {
    fn name(&self) -> &'static str {
        "core"
    }

    fn start(&mut self, setup: &Setup) -> Harness<Result<(), String>> {
        let client = match build_client(setup)? {
            Ok(c) => c,
            Err(refused) => return Ok(Err(refused)),
        };
        let rng = Random::from_spec(&setup.random)?;
        let manager = TokenManager::new(client.clone(), stored_tokens(setup), options(setup)?);
        self.run = Some(Run {
            client,
            now: setup.now,
            rng,
            logins: BTreeMap::new(),
            manager,
            store: Vec::new(),
            oidc: oidc::State::default(),
        });
        Ok(Ok(()))
    }

    fn authorize(&mut self, login: &str, p: &AuthorizeParams) -> Harness<Result<String, String>> {
        let run = self.run()?;
        let mut req = AuthorizationRequest::new();
        match p.response_type.as_deref() {
            None => {}
            Some("code") => req = req.response_type(ResponseType::Code),
            Some("code id_token") => req = req.response_type(ResponseType::CodeIdToken),
            Some(other) => return Err(format!("unknown response_type `{other}`")),
        }
        match p.response_mode.as_deref() {
            None => {}
            Some("query") => req = req.response_mode(ResponseMode::Query),
            Some("form_post") => req = req.response_mode(ResponseMode::FormPost),
            Some("fragment") => req = req.response_mode(ResponseMode::Fragment),
            Some(other) => return Err(format!("unknown response_mode `{other}`")),
        }
        if let Some(s) = &p.scope {
            req = req.scope(s);
        }
        if let Some(s) = &p.state {
            req = req.state(s);
        }
        if let Some(n) = &p.nonce {
            req = req.nonce(n);
        }
        if p.without_nonce {
            req = req.without_nonce();
        }
        if !p.pkce {
            req = req.without_pkce();
        }
        if let Some(pr) = &p.prompt {
            req = req.prompt(pr);
        }
        for (k, v) in &p.extra {
            req = req.extra(k, v);
        }
        Ok(match req.build(&run.client, &mut run.rng) {
            Ok(pending) => {
                let url = pending.authorize_url().to_owned();
                run.logins.insert(login.to_owned(), Slot::Pending(pending));
                Ok(url)
            }
            Err(e) => Err(format!("{e:?}")),
        })
    }

    fn callback(&mut self, login: &str, request: &Message) -> Harness<Result<(), String>> {
        let run = self.run()?;
        if !matches!(run.logins.get(login), Some(Slot::Pending(_))) {
            // The pending login was consumed by an earlier callback (or never built): the typestate
            // leaves nothing to handle a second callback with.
            return Ok(Err("NoPendingLogin".to_owned()));
        }
        let Some(Slot::Pending(pending)) = run.logins.remove(login) else {
            return Err("the pending login vanished".to_owned());
        };
        let body;
        let query;
        let callback = match request.method.as_str() {
            "GET" => {
                query = request.query_string().unwrap_or_default();
                Callback::Query(&query)
            }
            "POST" => {
                body = request.body_bytes();
                Callback::FormPost(&body)
            }
            other => return Err(format!("a callback is a GET or a POST, not {other}")),
        };
        Ok(match pending.handle_callback(&run.client, callback) {
            Ok(exchange) => {
                run.logins.insert(login.to_owned(), Slot::Code(exchange));
                Ok(())
            }
            Err(e) => Err(format!("{e:?}")),
        })
    }

    fn exchange(&mut self, login: &str, wire: &Wire) -> Harness<Result<TokensView, String>> {
        let run = self.run()?;
        if !matches!(run.logins.get(login), Some(Slot::Code(_))) {
            // No accepted callback, or the code was already sent: the typestate consumed it.
            return Ok(Err("NoCodeToExchange".to_owned()));
        }
        let Some(Slot::Code(exchange)) = run.logins.remove(login) else {
            return Err("the code exchange vanished".to_owned());
        };
        let (request, waiting) = exchange.into_request(&run.client);
        Ok(match wire.send(&request) {
            Reply::Response(r) => match waiting.handle_response(&r, run.now) {
                Ok(login) => {
                    // The fixtures look at the token endpoint's answer here (section C); the ID token is
                    // verified by a later `verify_id_token` step, as the adapters' FinishLogin does at once.
                    let v = view(login.unverified_tokens());
                    run.manager.handle_login(login.unverified_tokens().clone());
                    run.oidc.login = Some(login);
                    Ok(v)
                }
                Err(e) => Err(format!("{e:?}")),
            },
            Reply::TransportError(e) => Err(format!("Transport({e:?})")),
        })
    }

    fn api_calls(
        &mut self,
        request: &http::Request<()>,
        count: usize,
        wire: &Wire,
    ) -> Harness<Vec<CallOutcome>> {
        let run = self.run()?;
        let mut calls: Vec<_> = (0..count).map(|_| (run.manager.begin_call(), None)).collect();
        for _round in 0..64 {
            let mut progress = false;
            for (call, outcome) in calls.iter_mut().filter(|(_, o)| o.is_none()) {
                let mut req = request.clone();
                match run.manager.authorize(call, &mut req, run.now) {
                    Access::Ready(()) => {
                        progress = true;
                        let (parts, ()) = req.into_parts();
                        let sent = http::Request::from_parts(parts, Vec::new());
                        match wire.send(&sent) {
                            Reply::Response(r) => match run.manager.handle_api_response(call, &r) {
                                ApiOutcome::Retry => {}
                                ApiOutcome::Done(Ok(())) => *outcome = Some(CallOutcome::Ok),
                                ApiOutcome::Done(Err(e)) => *outcome = Some(api_failure(&e)),
                            },
                            Reply::TransportError(e) => {
                                *outcome = Some(CallOutcome::Failed {
                                    error: format!("Transport({e:?})"),
                                    retryable: true,
                                    login_required: false,
                                })
                            }
                        }
                    }
                    Access::Wait => {}
                    Access::Failed(e) => {
                        progress = true;
                        *outcome = Some(refresh_failure(&e));
                    }
                }
            }
            progress |= run.drain(wire)?;
            if calls.iter().all(|(_, o)| o.is_some()) {
                return Ok(calls.into_iter().filter_map(|(_, o)| o).collect());
            }
            if !progress {
                return Err("the calls wait and the manager asks for nothing".to_owned());
            }
        }
        Err("the calls did not end after 64 rounds".to_owned())
    }

    fn tick(&mut self, now: SystemTime) {
        if let Some(run) = self.run.as_mut() {
            run.now = now;
        }
    }

    fn next_timeout(&mut self) -> Option<SystemTime> {
        self.run.as_ref().and_then(|r| r.manager.poll_timeout())
    }

    fn timeout(&mut self, wire: &Wire) -> Harness<()> {
        let run = self.run()?;
        run.manager.handle_timeout(run.now);
        run.drain(wire).map(|_| ())
    }

    fn tokens(&self) -> Option<TokensView> {
        self.run.as_ref().and_then(|r| r.manager.tokens()).map(view)
    }

    fn take_store_events(&mut self) -> Vec<StoreEvent> {
        self.run.as_mut().map(|r| std::mem::take(&mut r.store)).unwrap_or_default()
    }

    fn oidc(&mut self) -> Option<&mut dyn super::oidc::OidcDriver> {
        Some(self)
    }
}

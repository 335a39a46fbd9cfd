//! The server's shared state: clock, keys, stores of codes, sessions, grants and tokens.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{ClientType, ClockMode, MockConfig, MockUser, TrustedApp};
use crate::faults::{CounterCells, FaultTable};
use crate::keys::{self, SigningKey};

pub(crate) const SESSION_COOKIE: &str = "idsrv.session";
pub(crate) const API_SCOPE: &str = "DomainApi";
const IDENTITY_SCOPES: &[&str] = &["openid", "profile", "email", "address", "phone"];

pub(crate) struct Clock {
    manual_start: Option<SystemTime>,
    offset_nanos: AtomicU64,
}

impl Clock {
    fn new(mode: ClockMode) -> Clock {
        Clock {
            manual_start: match mode {
                ClockMode::System => None,
                ClockMode::Manual { start } => Some(start),
            },
            offset_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn now(&self) -> SystemTime {
        let base = self.manual_start.unwrap_or_else(SystemTime::now);
        base + Duration::from_nanos(self.offset_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn now_secs(&self) -> u64 {
        self.now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    pub(crate) fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| Some(o.saturating_add(nanos)));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

/// A validated authorization request, waiting for a login or turned into a code.
#[derive(Debug, Clone)]
pub(crate) struct AuthRequest {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) hybrid: bool,
    pub(crate) response_mode: ResponseMode,
    pub(crate) scopes: Vec<String>,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    /// (challenge, is_plain)
    pub(crate) code_challenge: Option<(String, bool)>,
}

#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) req: AuthRequest,
    pub(crate) created: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) sid: String,
    pub(crate) username: String,
    pub(crate) auth_time: u64,
}

#[derive(Debug)]
pub(crate) struct CodeRecord {
    pub(crate) req: AuthRequest,
    pub(crate) session: Session,
    pub(crate) created: u64,
    pub(crate) used: bool,
    pub(crate) grant: Option<u64>,
}

/// One login (or one client-credentials issuance): the unit revoked together.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) session: Option<Session>,
    pub(crate) scopes: Vec<String>,
    pub(crate) created: u64,
    pub(crate) revoked: Arc<AtomicBool>,
    pub(crate) public_client: bool,
}

#[derive(Debug)]
pub(crate) struct RefreshRecord {
    pub(crate) grant: u64,
    pub(crate) client_id: String,
    pub(crate) created: u64,
    pub(crate) consumed: bool,
}

#[derive(Debug)]
pub(crate) struct AccessRecord {
    pub(crate) grant_revoked: Arc<AtomicBool>,
    pub(crate) revoked: AtomicBool,
    pub(crate) exp: u64,
    pub(crate) scopes: Vec<String>,
    pub(crate) username: Option<String>,
    pub(crate) client_id: String,
    pub(crate) kid: String,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) pending: HashMap<String, Pending>,
    pub(crate) codes: HashMap<String, CodeRecord>,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) grants: HashMap<u64, Grant>,
    pub(crate) refresh: HashMap<String, RefreshRecord>,
    next_grant: u64,
}

impl Store {
    pub(crate) fn add_grant(&mut self, grant: Grant) -> u64 {
        self.next_grant += 1;
        self.grants.insert(self.next_grant, grant);
        self.next_grant
    }
}

pub(crate) struct KeySet {
    pub(crate) signing: Arc<SigningKey>,
    pub(crate) published: Vec<Arc<SigningKey>>,
    next_pool: usize,
    pub(crate) jwks: Arc<String>,
}

fn jwks_json(keys: &[Arc<SigningKey>]) -> Arc<String> {
    let keys: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
    Arc::new(json!({ "keys": keys }).to_string())
}

pub(crate) struct Shared {
    pub(crate) config: MockConfig,
    pub(crate) apps: HashMap<String, TrustedApp>,
    pub(crate) users: HashMap<String, MockUser>,
    pub(crate) base_url: String,
    pub(crate) issuer: String,
    pub(crate) clock: Clock,
    pub(crate) counters: CounterCells,
    pub(crate) faults: FaultTable,
    pub(crate) keys: RwLock<KeySet>,
    store: Mutex<Store>,
    pub(crate) access: RwLock<HashMap<String, Arc<AccessRecord>>>,
    pub(crate) customers: Vec<String>,
    pub(crate) discovery: String,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    pub(crate) interceptor: crate::intercept::InterceptorSlot,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

/// The token endpoint's answer on success.
pub(crate) struct Issued {
    pub(crate) body: Value,
}

impl Shared {
    pub(crate) fn new(config: MockConfig, addr: SocketAddr) -> io::Result<Shared> {
        config.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let signing = keys::pool_key(0)?;
        let published = vec![signing.clone()];
        let jwks = jwks_json(&published);
        let base_url = format!("http://{addr}");
        let issuer = format!("{base_url}/id");
        let apps = config.apps.iter().map(|a| (a.application_uri.clone(), a.clone())).collect();
        let users = config.users.iter().map(|u| (u.username.clone(), u.clone())).collect();
        let customers = crate::api::customers(config.customers);
        let discovery = discovery_document(&config, &issuer);
        Ok(Shared {
            clock: Clock::new(config.clock),
            apps,
            users,
            base_url,
            issuer,
            counters: CounterCells::default(),
            faults: FaultTable::default(),
            keys: RwLock::new(KeySet { signing, published, next_pool: 1, jwks }),
            store: Mutex::new(Store::default()),
            access: RwLock::new(HashMap::new()),
            customers,
            discovery,
            shutdown: tokio::sync::watch::Sender::new(false),
            interceptor: crate::intercept::InterceptorSlot::default(),
            config,
        })
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn signing_key(&self) -> Arc<SigningKey> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).signing.clone()
    }

    pub(crate) fn published_keys(&self) -> Vec<Arc<SigningKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).published.clone()
    }

    pub(crate) fn jwks(&self) -> Arc<String> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).jwks.clone()
    }

    /// Makes the next pool key the signing key; returns its kid.
    pub(crate) fn rotate_key(&self) -> io::Result<String> {
        let index = self.keys.read().unwrap_or_else(|e| e.into_inner()).next_pool;
        // Generate (if needed) outside the write lock.
        let key = keys::pool_key(index)?;
        let mut ks = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if ks.next_pool != index {
            // A concurrent rotation won; rotate once more from its state.
            drop(ks);
            return self.rotate_key();
        }
        ks.next_pool = index + 1;
        if self.config.keep_old_keys_on_rotation {
            ks.published.insert(0, key.clone());
        } else {
            ks.published = vec![key.clone()];
        }
        ks.signing = key.clone();
        ks.jwks = jwks_json(&ks.published);
        Ok(key.kid.clone())
    }

    pub(crate) fn revoke_grant(&self, store: &mut Store, id: u64) {
        if let Some(g) = store.grants.get(&id)
            && !g.revoked.swap(true, Ordering::AcqRel)
        {
            self.counters.grants_revoked.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn revoke_user(&self, username: &str) {
        let mut store = self.store();
        let ids: Vec<u64> = store
            .grants
            .iter()
            .filter(|(_, g)| g.session.as_ref().is_some_and(|s| s.username == username))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.revoke_grant(&mut store, id);
        }
        store.sessions.retain(|_, s| s.username != username);
    }

    pub(crate) fn is_public(&self, client_id: &str) -> bool {
        self.apps.get(client_id).is_some_and(|a| a.client_type == ClientType::Public)
    }

    /// Access token (+ id_token when `openid` is in scope, + refresh token when given) for a grant.
    pub(crate) fn issue(
        &self,
        grant: &Grant,
        scopes: &[String],
        nonce: Option<&str>,
        refresh_token: Option<&str>,
    ) -> io::Result<Issued> {
        let now = self.clock.now_secs();
        let key = self.signing_key();
        // The application's own lifetime, else the global one; `expires_in` and `exp` are the same figure.
        let app = self.apps.get(&grant.client_id);
        let lifetime =
            app.and_then(|a| a.access_token_lifetime).unwrap_or(self.config.access_token_lifetime).as_secs();
        let exp = now.saturating_add(lifetime);
        let scopes = order_scopes(scopes);
        let mut claims = json!({
            "iss": self.issuer,
            "nbf": now,
            "iat": now,
            "exp": exp,
            "aud": API_SCOPE,
            "client_id": grant.client_id,
        });
        let user = grant.session.as_ref().and_then(|s| self.users.get(&s.username).map(|u| (s, u)));
        if let (Some(obj), Some((session, user))) = (claims.as_object_mut(), user) {
            obj.insert("sub".into(), json!(user.username));
            obj.insert("auth_time".into(), json!(session.auth_time));
            obj.insert("idp".into(), json!("local"));
            obj.insert("id".into(), json!(user.id));
            obj.insert("name".into(), json!(user.name));
            obj.insert("email".into(), json!(user.email));
            obj.insert("user_type".into(), json!("InternalUser"));
            obj.insert("db".into(), json!(self.config.database));
            obj.insert("locale".into(), json!(user.locale));
            obj.insert("sid".into(), json!(session.sid));
            obj.insert("amr".into(), json!(["pwd"]));
        } else if let Some(obj) = claims.as_object_mut() {
            obj.insert("client_db".into(), json!(self.config.database));
        }
        if let Some(obj) = claims.as_object_mut() {
            obj.insert("jti".into(), json!(keys::random_token(16)));
            obj.insert("scope".into(), json!(scopes));
        }
        let access_token = key.sign_jwt("at+jwt", &claims)?;
        let mut table = self.access.write().unwrap_or_else(|e| e.into_inner());
        if table.len() >= 65_536 && table.len().is_power_of_two() {
            // Keep memory bounded under long token floods: forget tokens expired beyond the skew.
            let skew = self.config.api_clock_skew.as_secs();
            table.retain(|_, r| r.exp.saturating_add(skew) > now);
        }
        table.insert(
            access_token.clone(),
            Arc::new(AccessRecord {
                grant_revoked: grant.revoked.clone(),
                revoked: AtomicBool::new(false),
                exp,
                scopes: scopes.clone(),
                username: grant.session.as_ref().map(|s| s.username.clone()),
                client_id: grant.client_id.clone(),
                kid: key.kid.clone(),
            }),
        );
        drop(table);
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "scope": scopes.join(" "),
        });
        if let (Some(obj), false) = (body.as_object_mut(), app.is_some_and(|a| a.omit_expires_in)) {
            obj.insert("expires_in".into(), json!(lifetime));
        }
        if let (Some(session), true) = (&grant.session, scopes.iter().any(|s| s == "openid")) {
            let id_token = self.id_token(
                &key,
                &grant.client_id,
                session,
                nonce,
                &[("at_hash", keys::half_hash(&access_token))],
            )?;
            if let Some(obj) = body.as_object_mut() {
                obj.insert("id_token".into(), json!(id_token));
            }
        }
        if let (Some(rt), Some(obj)) = (refresh_token, body.as_object_mut()) {
            obj.insert("refresh_token".into(), json!(rt));
        }
        Ok(Issued { body })
    }

    pub(crate) fn id_token(
        &self,
        key: &SigningKey,
        client_id: &str,
        session: &Session,
        nonce: Option<&str>,
        hashes: &[(&str, String)],
    ) -> io::Result<String> {
        let now = self.clock.now_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": client_id,
            "nbf": now,
            "iat": now,
            "exp": now.saturating_add(self.config.id_token_lifetime.as_secs()),
            "sid": session.sid,
            "sub": session.username,
            "auth_time": session.auth_time,
            "idp": "local",
            "amr": ["pwd"],
        });
        if let Some(obj) = claims.as_object_mut() {
            if let Some(n) = nonce {
                obj.insert("nonce".into(), json!(n));
            }
            for (k, v) in hashes {
                obj.insert((*k).into(), json!(v));
            }
        }
        key.sign_jwt("JWT", &claims)
    }

    /// An access token for `username` (or, with `None`, a client-credentials token) issued to `client_id`,
    /// without any HTTP exchange.
    pub(crate) fn mint(
        &self,
        username: Option<&str>,
        client_id: &str,
        scopes: &[String],
    ) -> io::Result<String> {
        let session = username.map(|u| Session {
            sid: keys::random_token(16),
            username: u.to_owned(),
            auth_time: self.clock.now_secs(),
        });
        let grant = Grant {
            client_id: client_id.to_owned(),
            session,
            scopes: scopes.to_vec(),
            created: self.clock.now_secs(),
            revoked: Arc::new(AtomicBool::new(false)),
            public_client: self.is_public(client_id),
        };
        let issued = self.issue(&grant, scopes, None, None)?;
        self.store().add_grant(grant);
        issued
            .body
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| io::Error::other("no access token issued"))
    }

    /// Checks an access token for the Domain API / userinfo.
    pub(crate) fn check_access_token(&self, token: &str) -> Result<Arc<AccessRecord>, &'static str> {
        let rec = self.access.read().unwrap_or_else(|e| e.into_inner()).get(token).cloned();
        let Some(rec) = rec else {
            return Err(if keys::verify_jwt(token, &self.published_keys()).is_some() {
                "The token is not known"
            } else {
                "The signature is invalid"
            });
        };
        if rec.revoked.load(Ordering::Acquire) || rec.grant_revoked.load(Ordering::Acquire) {
            return Err("The token has been revoked");
        }
        if rec.exp.saturating_add(self.config.api_clock_skew.as_secs()) <= self.clock.now_secs() {
            return Err("The token is expired");
        }
        if !self.config.keep_old_keys_on_rotation && rec.kid != self.signing_key().kid {
            return Err("The signature key was not found");
        }
        Ok(rec)
    }
}

/// IdentityServer's order: identity scopes, then API scopes, then `offline_access`; request order within
/// each group; no duplicates.
pub(crate) fn order_scopes(scopes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    let groups: [&dyn Fn(&str) -> bool; 3] = [
        &|s| IDENTITY_SCOPES.contains(&s),
        &|s| !IDENTITY_SCOPES.contains(&s) && s != "offline_access",
        &|s| s == "offline_access",
    ];
    for g in groups {
        for s in scopes {
            if g(s) && !out.contains(s) {
                out.push(s.clone());
            }
        }
    }
    out
}

pub(crate) fn is_identity_scope(s: &str) -> bool {
    IDENTITY_SCOPES.contains(&s) || s == "offline_access"
}

fn discovery_document(config: &MockConfig, issuer: &str) -> String {
    let mut scopes: Vec<String> = crate::config::DEMO_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    for app in &config.apps {
        for s in &app.allowed_scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
    }
    let mut pkce = vec!["S256"];
    if config.allow_plain_pkce {
        pkce.push("plain");
    }
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/openid-configuration/jwks"),
        "authorization_endpoint": format!("{issuer}/connect/authorize"),
        "token_endpoint": format!("{issuer}/connect/token"),
        "userinfo_endpoint": format!("{issuer}/connect/userinfo"),
        "end_session_endpoint": format!("{issuer}/connect/endsession"),
        "revocation_endpoint": format!("{issuer}/connect/revocation"),
        "frontchannel_logout_supported": false,
        "backchannel_logout_supported": false,
        "scopes_supported": scopes,
        "claims_supported": ["sub", "name", "email", "id", "user_type", "db", "locale", "auth_time", "idp", "amr", "sid"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types_supported": ["code", "code id_token"],
        "response_modes_supported": ["form_post", "query", "fragment"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "code_challenge_methods_supported": pkce,
        "request_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    })
    .to_string()
}

/// Constant-time comparison of two secret hashes.
pub(crate) fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    let given = crate::config::secret_hash(secret);
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(stored_hash.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

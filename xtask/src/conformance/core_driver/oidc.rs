//! The core driver's OpenID Connect operations: discovery, ID token verification with the core's
//! [`KeyCache`] deciding the JWKS fetches, the hybrid front channel, revocation and end session.

use super::super::driver::{Harness, Reply, StoreEvent, Wire};
use super::super::oidc::{Expect, OidcDriver};
use super::{CoreDriver, Run, Slot};
use erpnet_oauth_core::{
    AccessToken, AuthorizationCode, EndSession, IdToken, IdTokenExpectations, KeyCache, Login,
    ProviderMetadata, parse_revocation_response, verify_id_token,
};

/// What the OpenID Connect steps keep between steps.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The issuer's keys, and when to fetch them again.
    cache: KeyCache,
    /// The last finished login (its nonce and tokens).
    pub(super) login: Option<Login>,
}

/// Fetches the JWKS as long as the key cache asks for it (at most once per `now`: the cache counts a fetch
/// when it hands out the request). A failed fetch keeps the old keys.
fn fetch_keys(run: &mut Run, token: &IdToken, wire: &Wire) {
    while let Some(request) = run.oidc.cache.poll_fetch(&run.client, token, run.now) {
        if let Reply::Response(r) = wire.send(&request) {
            let _kept_old_keys = run.oidc.cache.handle_jwks_response(&r);
        }
    }
}

impl OidcDriver for CoreDriver {
    fn discovery(&mut self, wire: &Wire) -> Harness<Result<(), String>> {
        let run = self.run()?;
        let request = run.client.discovery_request();
        let response = match wire.send(&request) {
            Reply::Response(r) => r,
            Reply::TransportError(e) => return Ok(Err(format!("Transport({e:?})"))),
        };
        let meta = match ProviderMetadata::parse(&response, run.client.issuer()) {
            Ok(m) => m,
            Err(e) => return Ok(Err(format!("{e:?}"))),
        };
        match run.client.with_provider(&meta) {
            // The logins and verifications use the discovered configuration. (The token manager keeps
            // the one it was started with: the cases' documents list ERP.net's own endpoints.)
            Ok(client) => {
                run.client = client;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(format!("{e:?}"))),
        }
    }

    fn iss_parameter_supported(&self) -> Harness<bool> {
        self.run
            .as_ref()
            .map(|r| r.client.iss_parameter_supported())
            .ok_or_else(|| "no case started".to_owned())
    }

    fn verify_id_token(
        &mut self,
        token: Option<&str>,
        expect: &Expect,
        wire: &Wire,
    ) -> Harness<Result<String, String>> {
        let run = self.run()?;
        let result = match token {
            Some(t) => {
                let token = IdToken::new(t);
                fetch_keys(run, &token, wire);
                let access_token = expect.access_token.as_deref().map(AccessToken::new);
                let code = expect.code.as_deref().map(AuthorizationCode::new);
                let mut e = IdTokenExpectations::new().nonce(expect.nonce.as_deref());
                if let Some(at) = &access_token {
                    e = e.access_token(at);
                }
                if let Some(c) = &code {
                    e = e.code(c);
                }
                verify_id_token(&token, &run.client, run.oidc.cache.keys(), &e, run.now)
            }
            None => {
                let login = run.oidc.login.take().ok_or_else(|| "no login has finished".to_owned())?;
                if let Some(token) = login.id_token().cloned() {
                    fetch_keys(run, &token, wire);
                }
                login
                    .verify(&run.client, run.oidc.cache.keys(), run.now)
                    .and_then(|v| v.claims.ok_or(erpnet_oauth_core::IdTokenError::Missing))
            }
        };
        Ok(result.map(|claims| claims.sub).map_err(|e| format!("{e:?}")))
    }

    fn verify_front_channel(&mut self, login: &str, wire: &Wire) -> Harness<Result<(), String>> {
        let run = self.run()?;
        let token = match run.logins.get(login) {
            Some(Slot::Code(exchange)) => exchange.front_channel_id_token().cloned(),
            _ => return Ok(Err("NoCodeToExchange".to_owned())),
        };
        if let Some(token) = &token {
            fetch_keys(run, token, wire);
        }
        let result = match run.logins.get_mut(login) {
            Some(Slot::Code(exchange)) => {
                exchange.verify_front_channel(&run.client, run.oidc.cache.keys(), run.now)
            }
            _ => return Err("the code exchange vanished".to_owned()),
        };
        match result {
            Ok(_) => Ok(Ok(())),
            Err(e) => {
                // Rejected before the exchange: the login ends and its code is never sent.
                run.logins.remove(login);
                Ok(Err(format!("{e:?}")))
            }
        }
    }

    fn revoke(&mut self, wire: &Wire) -> Harness<Result<(), (String, bool)>> {
        let run = self.run()?;
        let refresh = run.manager.tokens().and_then(|t| t.refresh_token.clone());
        let result = match refresh {
            None => Err(("NoRefreshToken".to_owned(), false)),
            Some(rt) => match run.client.revocation_request(&rt) {
                Err(e) => Err((format!("{e:?}"), false)),
                Ok(request) => match wire.send(&request) {
                    Reply::Response(r) => {
                        parse_revocation_response(&r).map_err(|e| (format!("{e:?}"), e.is_retryable()))
                    }
                    Reply::TransportError(e) => Err((format!("Transport({e:?})"), true)),
                },
            },
        };
        // Local logout whatever the server said (catalogue G2).
        run.manager.handle_logout();
        run.oidc.login = None;
        run.store.push(StoreEvent::Clear);
        Ok(result)
    }

    fn end_session(
        &mut self,
        post_logout_redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Harness<Result<String, String>> {
        let run = self.run()?;
        let hint = run.manager.tokens().and_then(|t| t.id_token.clone());
        let logout = EndSession { id_token_hint: hint.as_ref(), post_logout_redirect_uri, state };
        Ok(run.client.end_session_url(&logout).map_err(|e| format!("{e:?}")))
    }
}

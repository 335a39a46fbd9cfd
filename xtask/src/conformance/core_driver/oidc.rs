//! The core driver's OpenID Connect operations: discovery, the hybrid front channel (a step of the login's
//! [`FinishLogin`]), standalone ID token verification (a login of the verifier's), logout ([`LogOut`]) and
//! end session.

use super::super::driver::{Harness, Wire};
use super::super::oidc::{Expect, OidcDriver};
use super::super::outcome::{describe, revocation};
use super::{
    CallbackData, CoreDriver, LoginSlot, NO_CODE, Ran, verification_answer, verification_callback,
    verification_request,
};
use erpnet_oauth_core::lifecycle::{FinishLogin, LogOut, Target};
use erpnet_oauth_core::{EndSession, IdTokenError, Input, ProviderMetadata, SeededRandom, TokenManager};

impl OidcDriver for CoreDriver {
    fn discovery(&mut self, wire: &Wire) -> Harness<Result<(), String>> {
        let run = self.run()?;
        run.core.injected.clear();
        let request = run.core.manager.client().discovery_request();
        let response = match run.core.send(&request, Target::IdentityServer, wire) {
            Input::Response(r) => r,
            Input::Failed(e) => return Ok(Err(describe(&e, &run.core.injected))),
            other => return Err(format!("sending gave {other:?}")),
        };
        let client = run.core.manager.client();
        let meta = match ProviderMetadata::parse(&response, client.issuer()) {
            Ok(m) => m,
            Err(e) => return Ok(Err(format!("{e:?}"))),
        };
        match client.with_provider(&meta) {
            // The application builds its client with the discovered configuration: the managers start
            // again with it (the tokens held are kept).
            Ok(client) => {
                let tokens = run.core.manager.tokens().cloned();
                run.core.manager = TokenManager::new(client.clone(), tokens, run.core.options.clone());
                run.verifier.manager = TokenManager::new(client, None, run.verifier.options.clone());
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(format!("{e:?}"))),
        }
    }

    fn iss_parameter_supported(&self) -> Harness<bool> {
        self.run
            .as_ref()
            .map(|r| r.core.manager.client().iss_parameter_supported())
            .ok_or_else(|| "no case started".to_owned())
    }

    fn verify_id_token(
        &mut self,
        token: Option<&str>,
        expect: &Expect,
        wire: &Wire,
    ) -> Harness<Result<String, String>> {
        let run = self.run()?;
        let Some(token) = token else {
            // The last login's ID token was verified when it finished; nothing is sent.
            let login = run.last_login.as_ref().ok_or_else(|| "no login has finished".to_owned())?;
            return Ok(login
                .claims
                .as_ref()
                .map(|c| c.sub.clone())
                .ok_or_else(|| format!("{:?}", IdTokenError::Missing)));
        };
        let v = &mut run.verifier;
        v.injected.clear();
        let pending = verification_request(expect.nonce.as_deref())
            .build(v.manager.client(), &mut SeededRandom::new(0))
            .map_err(|e| format!("the verifying login: {e:?}"))?;
        let callback = CallbackData::Query(verification_callback(v.manager.client().issuer()));
        let op = FinishLogin::new(v.manager.client(), pending, callback.as_callback());
        let mut task = v.task(op);
        v.canned = Some(verification_answer(token, expect.access_token.as_deref()));
        let ran = v.drive(&mut task, wire, false)?;
        let unused = v.canned.take().is_some();
        v.events.clear();
        match ran {
            Ran::Done(Ok(login)) => {
                Ok(login.claims.map(|c| c.sub).ok_or_else(|| format!("{:?}", IdTokenError::Missing)))
            }
            Ran::Done(Err(e)) if !unused => Ok(Err(describe(&e, &v.injected))),
            Ran::Done(Err(e)) => Err(format!("the verifying login ended before its token request: {e:?}")),
            Ran::Parked => Err("the verifying login stopped at a request".to_owned()),
        }
    }

    fn verify_front_channel(&mut self, login: &str, wire: &Wire) -> Harness<Result<(), String>> {
        let run = self.run()?;
        run.core.injected.clear();
        let ended = match run.carry_login(login, wire, true) {
            Err(e) if e == NO_CODE => return Ok(Err(e)),
            Err(e) => return Err(e),
            Ok(None) => return Ok(Ok(())),
            Ok(Some(ended)) => ended,
        };
        match ended {
            // Rejected before the exchange: the login ends and its code is never sent.
            (Err(e), false) => Ok(Err(describe(&e, &run.core.injected))),
            (result, code_sent) => {
                run.logins.insert(login.to_owned(), LoginSlot::Ended { result, code_sent });
                Ok(Ok(()))
            }
        }
    }

    fn revoke(&mut self, wire: &Wire) -> Harness<Result<(), (String, bool)>> {
        let run = self.run()?;
        run.core.injected.clear();
        let mut task = run.core.task(LogOut::new());
        let result = match run.core.drive(&mut task, wire, false)? {
            Ran::Done(result) => result,
            Ran::Parked => return Err("the logout stopped at a request".to_owned()),
        };
        run.last_login = None;
        revocation(result, &run.core.injected)
    }

    fn end_session(
        &mut self,
        post_logout_redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Harness<Result<String, String>> {
        let run = self.run()?;
        let hint = run.core.manager.tokens().and_then(|t| t.id_token.clone());
        let logout = EndSession { id_token_hint: hint.as_ref(), post_logout_redirect_uri, state };
        Ok(run.core.manager.client().end_session_url(&logout).map_err(|e| format!("{e:?}")))
    }
}

//! This toolkit vs oauth2-rs 5 on the same work, same run (`cargo xtask bench` prints the table).
//!
//! Both sides: the seed's confidential client with `client_secret_post`, the seed's authorize request
//! (`code id_token`, its four scopes, PKCE S256, state and nonce of 32 random bytes each), the seed's token
//! response and a §5.2 `invalid_grant` answer. Per iteration each side gets fresh inputs built in
//! `iter_batched`'s setup (not timed); the canned answer is handed over in the setup too, so that neither side
//! pays for copying it. Outputs are returned so that they are dropped outside the timed span.
//!
//! - Ours: the core over the OS random source (`OsRandom`, `getrandom`): `AuthorizationRequest::build`;
//!   `CodeExchange::into_request` + `TokenExchange::handle_response`; `ClientConfig::token_request` +
//!   `parse_token_response`.
//! - oauth2-rs: `authorize_url` with `CsrfToken::new_random_len(32)` (state, and the nonce as an extra
//!   parameter: oauth2-rs has no nonce) and `PkceCodeChallenge::new_random_sha256`; `exchange_code(..)
//!   .set_pkce_verifier(..).request(&client)` and `exchange_refresh_token(..).request(&client)` through a
//!   closure HTTP client returning the canned answer.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use erpnet_oauth_bench::{
    CLIENT_ID, CLIENT_SECRET, CODE, INSTANCE, INVALID_GRANT, REDIRECT_URI, REFRESH_TOKEN, SCOPES,
    TOKEN_RESPONSE, json_response, seed_client,
};
use erpnet_oauth_core::{
    AuthorizationRequest, Callback, ClientConfig, CodeExchange, Grant, RefreshToken, ResponseType, Scopes,
    parse_token_response,
};
use erpnet_oauth_ureq::OsRandom;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenUrl,
};
use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

type TheirClient = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn their_client() -> TheirClient {
    BasicClient::new(ClientId::new(CLIENT_ID.to_owned()))
        .set_client_secret(ClientSecret::new(CLIENT_SECRET.to_owned()))
        .set_auth_uri(AuthUrl::new(format!("{INSTANCE}/id/connect/authorize")).expect("auth url"))
        .set_token_uri(TokenUrl::new(format!("{INSTANCE}/id/connect/token")).expect("token url"))
        .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.to_owned()).expect("redirect url"))
        .set_auth_type(AuthType::RequestBody)
}

/// oauth2-rs's HTTP client: hands back the answer prepared in the setup and keeps the request, so that
/// neither is copied nor dropped inside the timed span.
struct Canned {
    response: RefCell<Option<oauth2::HttpResponse>>,
    request: RefCell<Option<oauth2::HttpRequest>>,
}

impl Canned {
    fn new(status: u16, body: &str) -> Canned {
        Canned { response: RefCell::new(Some(json_response(status, body))), request: RefCell::new(None) }
    }

    fn client(&self) -> impl Fn(oauth2::HttpRequest) -> Result<oauth2::HttpResponse, std::io::Error> + '_ {
        move |request| {
            *self.request.borrow_mut() = Some(request);
            self.response.borrow_mut().take().ok_or_else(|| std::io::Error::other("answered once"))
        }
    }
}

fn our_exchange(client: &ClientConfig) -> CodeExchange {
    let pending = AuthorizationRequest::new()
        .response_type(ResponseType::CodeIdToken)
        .build(client, &mut OsRandom)
        .expect("a pending login");
    let callback = format!("code={CODE}&state={}", pending.state());
    pending.handle_callback(client, Callback::Query(&callback)).expect("the callback")
}

fn compare(c: &mut Criterion) {
    let ours = seed_client().expect("the seed's client");
    let theirs = their_client();
    let now = UNIX_EPOCH + Duration::from_secs(1_655_057_724);
    let scopes = Scopes::parse(SCOPES);
    let their_scopes: Vec<Scope> = SCOPES.split(' ').map(|s| Scope::new(s.to_owned())).collect();
    let code_id_token = oauth2::ResponseType::new("code id_token".to_owned());

    let mut group = c.benchmark_group("authorize_url");
    group.bench_function("ours", |b| {
        b.iter(|| {
            AuthorizationRequest::new()
                .response_type(ResponseType::CodeIdToken)
                .build(black_box(&ours), &mut OsRandom)
                .expect("a pending login")
        })
    });
    group.bench_function("oauth2-rs", |b| {
        b.iter(|| {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            let nonce = CsrfToken::new_random_len(32);
            let (url, state) = black_box(&theirs)
                .authorize_url(|| CsrfToken::new_random_len(32))
                .set_response_type(&code_id_token)
                .add_scopes(their_scopes.iter().cloned())
                .add_extra_param("nonce", nonce.secret().clone())
                .set_pkce_challenge(challenge)
                .url();
            (url, state, verifier, nonce)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("code_exchange");
    group.bench_function("ours", |b| {
        b.iter_batched(
            || (our_exchange(&ours), json_response(200, TOKEN_RESPONSE)),
            |(exchange, answer)| {
                let (request, waiting) = exchange.into_request(&ours);
                let login = waiting.handle_response(&answer, now).expect("a login");
                (request, login, answer)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("oauth2-rs", |b| {
        b.iter_batched(
            || {
                let (_, verifier) = PkceCodeChallenge::new_random_sha256();
                (AuthorizationCode::new(CODE.to_owned()), verifier, Canned::new(200, TOKEN_RESPONSE))
            },
            |(code, verifier, canned): (AuthorizationCode, PkceCodeVerifier, Canned)| {
                let tokens = theirs
                    .exchange_code(code)
                    .set_pkce_verifier(verifier)
                    .request(&canned.client())
                    .expect("tokens");
                (tokens, canned)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let refresh_token = RefreshToken::new(REFRESH_TOKEN);
    let their_refresh_token = oauth2::RefreshToken::new(REFRESH_TOKEN.to_owned());
    for (name, status, body) in
        [("refresh", 200, TOKEN_RESPONSE), ("refresh_invalid_grant", 400, INVALID_GRANT)]
    {
        let mut group = c.benchmark_group(name);
        group.bench_function("ours", |b| {
            b.iter_batched(
                || json_response(status, body),
                |answer| {
                    let request = ours.token_request(Grant::RefreshToken(&refresh_token));
                    let result = parse_token_response(&answer, now, &scopes);
                    assert_eq!(result.is_ok(), status == 200);
                    (request, result, answer)
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function("oauth2-rs", |b| {
            b.iter_batched(
                || Canned::new(status, body),
                |canned| {
                    let result =
                        theirs.exchange_refresh_token(&their_refresh_token).request(&canned.client());
                    assert_eq!(result.is_ok(), status == 200);
                    (result, canned)
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, compare);
criterion_main!(benches);

//! Overhead of the session: authorized Domain API calls through [`Session::get`] against the same calls
//! made with a bare ureq agent and a fixed `Authorization` header, same mock, same run.
//!
//! `cargo bench -p erpnet-oauth-ureq --bench overhead` prints criterion's timings, then the ratio of
//! throughputs measured in interleaved rounds (goal: at least 0.97).

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use erpnet_oauth_mock::{MockConfig, MockErpNet};
use erpnet_oauth_ureq::{HttpClient, HttpOptions, Session};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PATH: &str = "/api/domain/odata/Crm_Customers?$top=10";

struct Setup {
    _mock: Arc<MockErpNet>,
    session: Session,
    agent: ureq::Agent,
    url: String,
    bearer: String,
    limit: u64,
}

fn setup() -> Setup {
    let mut config = MockConfig::default();
    for app in &mut config.apps {
        app.impersonate_login_urls.push(common::REDIRECT_URI.to_owned());
    }
    let mock = Arc::new(MockErpNet::start(config).expect("the mock starts"));
    let session = Session::new(common::client(&mock, common::REDIRECT_URI)).expect("a session");
    common::login(&mock, &session);
    let token = session.access_token().expect("a token");
    // The same agent settings as the session's.
    let bare = HttpClient::new(HttpOptions::default());
    Setup {
        url: format!("{}{PATH}", mock.base_url()),
        bearer: format!("Bearer {}", token.secret()),
        agent: bare.agent().clone(),
        limit: bare.options().api_body_limit,
        session,
        _mock: mock,
    }
}

fn bare_call(s: &Setup) -> usize {
    let request = http::Request::get(s.url.as_str())
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::AUTHORIZATION, s.bearer.as_str())
        .body(())
        .expect("a request");
    let mut response = s.agent.run(request).expect("the call");
    assert_eq!(response.status(), 200);
    response.body_mut().with_config().limit(s.limit).read_to_vec().expect("the body").len()
}

fn session_call(s: &Setup) -> usize {
    let response = s.session.get(PATH).expect("the call");
    assert_eq!(response.status(), 200);
    response.body().len()
}

fn overhead(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("domain_api_call");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("bare_ureq_fixed_header", |b| b.iter(|| black_box(bare_call(&s))));
    group.bench_function("session_get", |b| b.iter(|| black_box(session_call(&s))));
    group.finish();

    // Interleaved rounds, so that a noisy neighbour slows both sides alike.
    const ROUNDS: usize = 10;
    const CALLS: usize = 500;
    let mut ratios = Vec::with_capacity(ROUNDS);
    let (mut bare_total, mut session_total) = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        let time = |f: &dyn Fn(&Setup) -> usize| {
            let start = Instant::now();
            for _ in 0..CALLS {
                black_box(f(&s));
            }
            start.elapsed()
        };
        let (bare, session) = if round % 2 == 0 {
            let b = time(&bare_call);
            (b, time(&session_call))
        } else {
            let sess = time(&session_call);
            (time(&bare_call), sess)
        };
        bare_total += bare;
        session_total += session;
        ratios.push(bare.as_secs_f64() / session.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let median = (ratios[ROUNDS / 2 - 1] + ratios[ROUNDS / 2]) / 2.0;
    let calls = (ROUNDS * CALLS) as f64;
    println!(
        "throughput: bare ureq {:.0} calls/s, session {:.0} calls/s; session/bare ratio: overall {:.3}, median of \
         {ROUNDS} interleaved rounds {:.3} (goal >= 0.97)",
        calls / bare_total.as_secs_f64(),
        calls / session_total.as_secs_f64(),
        bare_total.as_secs_f64() / session_total.as_secs_f64(),
        median
    );
}

criterion_group!(benches, overhead);
criterion_main!(benches);

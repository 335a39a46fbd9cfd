//! The session's memory per logged-in user: live heap bytes (a counting global allocator) for N
//! `TokenManager`s (the core's per-user state) and N `Session`s (the ureq adapter, each with its own
//! memory token store and HTTP agent), each holding the seed's tokens (distinct strings per user), minus
//! the token strings' own lengths. `cargo run --release -p erpnet-oauth-bench --bin memory [N]`.

#![allow(unsafe_code)]

use erpnet_oauth_bench::{SCOPES, TOKEN_RESPONSE, json_response, seed_client};
use erpnet_oauth_core::{ManagerOptions, Scopes, TokenManager, TokenSet, parse_token_response};
use erpnet_oauth_ureq::{MemoryStore, Session};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The seed's tokens, made distinct for user `i` (same lengths).
fn tokens(i: usize) -> Result<TokenSet, Box<dyn std::error::Error>> {
    let now = UNIX_EPOCH + Duration::from_secs(1_655_057_724);
    let mut body = TOKEN_RESPONSE.to_owned();
    let tag = format!("{i:08}");
    for field in ["\"access_token\": \"", "\"refresh_token\": \"", "\"id_token\": \""] {
        if let Some(at) = body.find(field) {
            let start = at + field.len();
            body.replace_range(start..start + tag.len(), &tag);
        }
    }
    Ok(parse_token_response(&json_response(200, &body), now, &Scopes::parse(SCOPES))?)
}

fn token_bytes(t: &TokenSet) -> usize {
    t.access_token.secret().len()
        + t.refresh_token.as_ref().map_or(0, |r| r.secret().len())
        + t.id_token.as_ref().map_or(0, |r| r.secret().len())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let strings = token_bytes(&tokens(0)?);

    // Each user's tokens are parsed inside the measured span: their strings are counted, then subtracted.
    let before = LIVE.load(Ordering::Relaxed);
    let managers: Vec<TokenManager> = (0..n)
        .map(|i| Ok(TokenManager::new(seed_client()?, Some(tokens(i)?), ManagerOptions::default())))
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let per_manager = (LIVE.load(Ordering::Relaxed) - before) as f64 / n as f64;
    drop(managers);

    let before = LIVE.load(Ordering::Relaxed);
    let sessions: Vec<Session> = (0..n)
        .map(|i| Ok(Session::builder(seed_client()?).store(MemoryStore::with_tokens(tokens(i)?)).build()?))
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    if !sessions.iter().all(Session::is_logged_in) {
        return Err("a session is not logged in".into());
    }
    let per_session = (LIVE.load(Ordering::Relaxed) - before) as f64 / n as f64;
    drop(sessions);

    // A server with a session per user shares one HTTP client and one configuration between them.
    let shared = erpnet_oauth_ureq::HttpClient::new(erpnet_oauth_ureq::HttpOptions::default());
    let config = std::sync::Arc::new(seed_client()?);
    let before = LIVE.load(Ordering::Relaxed);
    let sessions: Vec<Session> = (0..n)
        .map(|i| {
            Ok(Session::builder(config.clone())
                .http_client(shared.clone())
                .store(MemoryStore::with_tokens(tokens(i)?))
                .build()?)
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    if !sessions.iter().all(Session::is_logged_in) {
        return Err("a session is not logged in".into());
    }
    let per_shared_session = (LIVE.load(Ordering::Relaxed) - before) as f64 / n as f64;
    drop(sessions);

    println!("{n} users; token strings (access + refresh + ID token): {strings} bytes per user");
    println!(
        "TokenManager (core, client config + tokens): {per_manager:.0} bytes per user, {:.0} beyond the token strings",
        per_manager - strings as f64
    );
    println!(
        "Session (ureq adapter: manager + memory store + HTTP agent): {per_session:.0} bytes per user, {:.0} beyond \
         the token strings",
        per_session - strings as f64
    );
    println!(
        "Session sharing one HTTP client and configuration (a server's users): {per_shared_session:.0} bytes per user, {:.0} beyond \
         the token strings",
        per_shared_session - strings as f64
    );
    Ok(())
}

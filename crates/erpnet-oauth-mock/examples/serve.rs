//! Serves the default mock on a loopback port and prints a valid Domain API token, for benchmarks and manual
//! tries: `cargo run --release -p erpnet-oauth-mock --example serve -- [PORT]`.
//!
//! Then, for example:
//! `wrk -t2 -c64 -d10s -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:PORT/api/domain/odata/Crm_Customers?$top=10'`

use std::net::SocketAddr;

use erpnet_oauth_mock::{DEMO_CLIENT_ID, MockConfig, MockErpNet};

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let mock = MockErpNet::start_on(MockConfig::default(), SocketAddr::from(([127, 0, 0, 1], port)))?;
    let token = mock.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["openid", "profile", "DomainApi"])?;
    println!("BASE_URL={}", mock.base_url());
    println!("TOKEN={token}");
    eprintln!("serving on {}; POST {}/_mock/shutdown to stop", mock.base_url(), mock.base_url());
    mock.wait();
    Ok(())
}

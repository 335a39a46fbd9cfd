//! `cargo run -p erpnet-oauth-web-example`: the web example, against the embedded mock ERP.net by default,
//! or against a real instance with `--instance`, `--client-id`, `--client-secret`, `--redirect-uri`.

use clap::Parser;
use erpnet_oauth_mock::{
    ClockMode, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PASSWORD, DEMO_USER, MockConfig, MockErpNet,
};
use erpnet_oauth_web_example::{AppConfig, router};
use std::time::SystemTime;

/// An axum web application that signs users in through ERP.net and lists their customers.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The ERP.net instance URL (e.g. https://demodb.my.erp.net). Without it, an embedded mock ERP.net is
    /// started on a loopback port and used.
    #[arg(long, env = "ERPNET_INSTANCE")]
    instance: Option<String>,
    /// The trusted application's ApplicationUri (client id). Default with the mock: my.trusted.app/first.
    #[arg(long, env = "ERPNET_CLIENT_ID")]
    client_id: Option<String>,
    /// The application secret (omit for a public client). Default with the mock: the demo secret.
    #[arg(long, env = "ERPNET_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// The redirect URI registered as the application's ImpersonateLoginUrl. Default:
    /// http://127.0.0.1:PORT/signin-callback on the port listened on.
    #[arg(long, env = "ERPNET_REDIRECT_URI")]
    redirect_uri: Option<String>,
    /// The address to listen on (port 0: chosen by the OS).
    #[arg(long, env = "ERPNET_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let redirect_uri = args.redirect_uri.clone().unwrap_or_else(|| format!("http://{addr}/signin-callback"));

    // Kept alive until the server stops.
    let mut mock: Option<MockErpNet> = None;
    let config = match &args.instance {
        Some(instance) => AppConfig {
            instance: instance.clone(),
            client_id: args
                .client_id
                .clone()
                .ok_or("--client-id (ERPNET_CLIENT_ID) is required with --instance")?,
            client_secret: args.client_secret.clone(),
            redirect_uri,
        },
        None => {
            // A manual clock starting now: tokens expire only when the mock's clock is advanced
            // (POST /_mock/clock/advance?seconds=3600), which shows the refresh.
            let mut config =
                MockConfig { clock: ClockMode::Manual { start: SystemTime::now() }, ..MockConfig::default() };
            for app in &mut config.apps {
                app.impersonate_login_urls.push(redirect_uri.clone());
            }
            let started = MockErpNet::start(config)?;
            eprintln!(
                "Mock ERP.net at {} (user `{DEMO_USER}`, password `{DEMO_PASSWORD}`)",
                started.base_url()
            );
            eprintln!(
                "Expire the access token: curl -X POST '{}/_mock/clock/advance?seconds=3600'",
                started.base_url()
            );
            let config = AppConfig {
                instance: started.base_url(),
                client_id: args.client_id.clone().unwrap_or_else(|| DEMO_CLIENT_ID.to_owned()),
                client_secret: Some(
                    args.client_secret.clone().unwrap_or_else(|| DEMO_CLIENT_SECRET.to_owned()),
                ),
                redirect_uri,
            };
            mock = Some(started);
            config
        }
    };
    let app = router(&config)?;
    println!("Open http://{addr}/ in your browser");
    axum::serve(listener, app).await?;
    drop(mock);
    Ok(())
}

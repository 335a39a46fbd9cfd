//! What [`crate::run_foreground`] prints when it starts: the configuration actually loaded (its applications,
//! client ids, redirect URIs and users), never the demo credentials unless they are the ones loaded.

use std::fmt::Write as _;

use crate::config::{
    ClientType, ClockMode, DEMO_CLIENT_SECRET, DEMO_PASSWORD, MockConfig, TrustedApp, secret_hash,
};

/// The banner of a mock serving `config` at `base` (the instance URL) with the issuer `issuer`, one line per
/// `\n`, ending with a newline.
pub(crate) fn banner(config: &MockConfig, base: &str, issuer: &str) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_banner(&mut out, config, base, issuer);
    out
}

fn write_banner(out: &mut String, config: &MockConfig, base: &str, issuer: &str) -> std::fmt::Result {
    writeln!(out, "erpnet-oauth-mock: a fake ERP.net instance is listening on {base}")?;
    writeln!(out, "  instance:   {base}   (--instance / ERPNET_INSTANCE)")?;
    writeln!(out, "  issuer:     {issuer}")?;
    writeln!(out, "  discovery:  {issuer}/.well-known/openid-configuration")?;
    writeln!(out, "  Domain API: {base}/api/domain/odata/Crm_Customers?$top=10")?;
    if config.apps.is_empty() {
        writeln!(out, "trusted applications: none")?;
    } else {
        writeln!(out, "trusted applications (client id: what it is):")?;
    }
    for app in &config.apps {
        writeln!(out, "  {}: {}", clean(&app.application_uri), describe_app(app))?;
        let uris: Vec<String> = app.impersonate_login_urls.iter().map(|u| clean(u)).collect();
        if uris.is_empty() {
            writeln!(out, "    redirect URIs: none (logins are refused)")?;
        } else {
            writeln!(out, "    redirect URIs (exact match): {}", uris.join(" "))?;
        }
        writeln!(out, "    scopes: {}", clean(&app.allowed_scopes.join(" ")))?;
    }
    if config.users.is_empty() {
        writeln!(out, "users: none")?;
    } else {
        writeln!(out, "users (log in on the login page as):")?;
    }
    for user in &config.users {
        let password = if user.password == DEMO_PASSWORD {
            format!("password {DEMO_PASSWORD} (the demo password)")
        } else {
            "password as in the configuration".to_owned()
        };
        let disabled = if user.is_enabled { "" } else { " (disabled: cannot log in)" };
        writeln!(out, "  {}, {password}{disabled}", clean(&user.username))?;
    }
    match config.clock {
        ClockMode::System => writeln!(out, "clock: the system clock")?,
        ClockMode::Manual { start } => writeln!(
            out,
            "clock: manual, starting at {} (Unix time); POST {base}/_mock/clock/advance?seconds=N moves it",
            start.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
        )?,
    }
    writeln!(
        out,
        "admin: {base}/_mock/counters, POST {base}/_mock/clock/advance?seconds=N, POST {base}/_mock/shutdown; \
         Ctrl-C stops"
    )
}

/// "confidential, secret ... ; client credentials as USER", "public (PKCE, no secret)", "(disabled)".
fn describe_app(app: &TrustedApp) -> String {
    let mut text = match app.client_type {
        ClientType::Public => "public (PKCE, no secret)".to_owned(),
        ClientType::Confidential => {
            let demo =
                app.application_secret_hash.as_deref() == Some(secret_hash(DEMO_CLIENT_SECRET).as_str());
            if demo {
                format!("confidential, secret {DEMO_CLIENT_SECRET} (the demo secret)")
            } else {
                "confidential, secret as in the configuration (only its hash is known here)".to_owned()
            }
        }
    };
    if let Some(user) = &app.system_user {
        text.push_str(&format!("; client credentials act as {}", clean(user)));
    }
    if !app.is_enabled {
        text.push_str(" (disabled: refused everywhere)");
    }
    text
}

/// The configuration's text with control characters written as escapes, so that a configuration file cannot
/// drive the terminal.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        DEMO_CLIENT_ID, DEMO_LOCALHOST_REDIRECT_URI, DEMO_LOOPBACK_REDIRECT_URI, DEMO_PUBLIC_CLIENT_ID,
        DEMO_REDIRECT_URI, DEMO_SERVICE_CLIENT_ID, DEMO_USER, MockUser,
    };

    const BASE: &str = "http://127.0.0.1:8401";
    const ISSUER: &str = "http://127.0.0.1:8401/id";

    #[test]
    fn the_default_banner_shows_the_demo_apps_uris_and_credentials() {
        let text = banner(&MockConfig::default(), BASE, ISSUER);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.first().copied(),
            Some(format!("erpnet-oauth-mock: a fake ERP.net instance is listening on {BASE}").as_str())
        );
        assert!(text.ends_with("Ctrl-C stops\n"), "{text}");
        let uris = format!(
            "    redirect URIs (exact match): {DEMO_REDIRECT_URI} {DEMO_LOOPBACK_REDIRECT_URI} {DEMO_LOCALHOST_REDIRECT_URI}"
        );
        assert_eq!(lines.iter().filter(|l| **l == uris).count(), 3, "{text}");
        assert!(
            lines.contains(
                &format!("  {DEMO_CLIENT_ID}: confidential, secret my_plain_app_secret (the demo secret)")
                    .as_str()
            ),
            "{text}"
        );
        assert!(
            lines.contains(&format!("  {DEMO_PUBLIC_CLIENT_ID}: public (PKCE, no secret)").as_str()),
            "{text}"
        );
        assert!(lines.contains(&format!("  {DEMO_SERVICE_CLIENT_ID}: confidential, secret my_plain_app_secret (the demo secret); client credentials act as {DEMO_USER}").as_str()), "{text}");
        assert!(lines.contains(&"  admin, password admin-password (the demo password)"), "{text}");
        assert!(lines.contains(&"clock: the system clock"), "{text}");
    }

    #[test]
    fn another_configuration_shows_its_own_apps_and_no_demo_credential() {
        let config = MockConfig {
            apps: vec![
                TrustedApp {
                    name: "Mine".into(),
                    application_uri: "my/own\u{1b}[31mapp".into(),
                    application_secret_hash: Some(secret_hash("another secret")),
                    impersonate_login_urls: vec!["http://127.0.0.1:9999/cb".into()],
                    is_enabled: false,
                    ..TrustedApp::demo()
                },
                TrustedApp { impersonate_login_urls: vec![], ..TrustedApp::demo_public() },
            ],
            users: vec![MockUser {
                username: "bob".into(),
                password: "bobs-password".into(),
                is_enabled: false,
                ..MockUser::demo()
            }],
            ..MockConfig::seed_manual_clock()
        };
        let text = banner(&config, BASE, ISSUER);
        for absent in
            [DEMO_CLIENT_SECRET, DEMO_PASSWORD, "bobs-password", DEMO_CLIENT_ID, DEMO_REDIRECT_URI, "\u{1b}"]
        {
            assert!(!text.contains(absent), "{absent:?} in {text}");
        }
        let lines: Vec<&str> = text.lines().collect();
        for line in [
            "  my/own\\u{1b}[31mapp: confidential, secret as in the configuration (only its hash is known here) (disabled: refused everywhere)",
            "    redirect URIs (exact match): http://127.0.0.1:9999/cb",
            "  my.trusted.app/public: public (PKCE, no secret)",
            "    redirect URIs: none (logins are refused)",
            "  bob, password as in the configuration (disabled: cannot log in)",
            "clock: manual, starting at 1655057724 (Unix time); POST http://127.0.0.1:8401/_mock/clock/advance?seconds=N moves it",
        ] {
            assert!(lines.contains(&line), "{line:?} not in {text}");
        }
    }

    #[test]
    fn no_apps_and_no_users_say_so() {
        let config = MockConfig { apps: vec![], users: vec![], ..MockConfig::default() };
        let text = banner(&config, BASE, ISSUER);
        assert!(
            text.contains("\ntrusted applications: none\n") && text.contains("\nusers: none\n"),
            "{text}"
        );
    }
}

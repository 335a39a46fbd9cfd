//! The callback parser: `PendingLogin::handle_callback` with a query, a form_post body or a whole URL.
//! The first byte picks the form; the login's state is `xyz` so that the fuzzer can reach past the check.
#![no_main]

use erpnet_oauth_core::{AuthorizationRequest, Callback, ClientConfig, ClientSecret, SeededRandom};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else { return };
    let Ok(client) = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
        .client_secret(ClientSecret::new("my-secret"))
        .redirect_uri("http://localhost/signin-callback")
        .build()
    else {
        return;
    };
    let Ok(pending) = AuthorizationRequest::new().state("xyz").build(&client, &mut SeededRandom::new(1))
    else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let callback = match form % 3 {
        0 => Callback::Query(&text),
        1 => Callback::FormPost(rest),
        _ => Callback::Url(&text),
    };
    match pending.handle_callback(&client, callback) {
        Ok(exchange) => {
            let _ = exchange.into_request(&client);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

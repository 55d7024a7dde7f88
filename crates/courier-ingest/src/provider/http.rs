//! The HTTP side shared by the providers that POST JSON (slack, teams,
//! webhook) and by the result callback: one client, the verdict on a
//! response, and Courier's webhook signatures.

use std::time::Duration;

use courier_webhooks::signing::{seed_signature, standard_signature};
use serde_json::Value;

use super::ProviderError;

/// Most of a response body quoted in a result's detail.
const EXCERPT: usize = 300;

/// An HTTP client for provider calls: no redirects (a webhook that moved is a
/// configuration error to fix, not to follow), bounded by `timeout`.
pub(crate) fn client(timeout: Duration) -> reqwest::Client {
    // rustls needs a process-wide crypto provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("courier-ingest/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the provider HTTP client builds")
}

/// How a signed POST is signed: Courier's two webhook signatures.
pub(crate) struct Signing<'a> {
    pub secret: &'a str,
    /// The stable delivery id (`webhook-id`), the same on every attempt.
    pub id: &'a str,
}

/// POSTs `body` as JSON and turns the answer into a result: 2xx is delivered
/// (the detail quotes the status), 429 / 408 / 5xx and network errors retry
/// (honouring `Retry-After`), any other status is permanent.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    signing: Option<Signing<'_>>,
    headers: &[(&str, String)],
) -> Result<String, ProviderError> {
    let bytes =
        serde_json::to_vec(body).map_err(|e| ProviderError::permanent(format!("cannot encode the body: {e}")))?;
    let mut request = client.post(url).header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    if let Some(signing) = signing {
        let timestamp = chrono::Utc::now().timestamp();
        request = request
            .header("X-Webhook-Signature", seed_signature(signing.secret, &bytes))
            .header("webhook-id", signing.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                standard_signature(signing.secret, signing.id, timestamp, &bytes),
            );
    }
    let response = request
        .body(bytes)
        .send()
        .await
        .map_err(|e| ProviderError::transient(format!("request failed: {}", without_url(&e))))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    let excerpt: String = text.chars().take(EXCERPT).collect();
    let detail = if excerpt.trim().is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {}", status.as_u16(), excerpt.trim())
    };
    if status.is_success() {
        Ok(detail)
    } else {
        let mut error = ProviderError::from_status(status.as_u16(), detail);
        error.retry_after = retry_after;
        Err(error)
    }
}

/// A request error without the URL, which may carry a webhook's secret path.
fn without_url(error: &reqwest::Error) -> String {
    let mut error = error.to_string();
    if let Some(url) = error.find(" for url (") {
        error.truncate(url);
    }
    error
}

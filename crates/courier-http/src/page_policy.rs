//! What the HTML pages this node serves (the dashboard, the notifications
//! demo) may do in a browser: a Content-Security-Policy that lets only their
//! own inline script (by hash) and same-origin resources run, no framing by
//! other sites, no referrer sent elsewhere.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The headers one page is served with.
pub(crate) struct PagePolicy {
    csp: HeaderValue,
}

impl PagePolicy {
    /// The policy for `html`: each inline `<script>` (one without `src`) is
    /// allowed by its SHA-256, so an injected script is not.
    pub(crate) fn for_page(html: &str) -> PagePolicy {
        let hashes: Vec<String> = inline_scripts(html)
            .map(|script| {
                let digest = Sha256::digest(script.as_bytes());
                format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
            })
            .collect();
        // Styles stay 'unsafe-inline': the notifications client injects its
        // toast stylesheet at run time, and a style cannot run code.
        let csp = format!(
            "default-src 'self'; script-src 'self' {}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            hashes.join(" ")
        );
        PagePolicy {
            csp: HeaderValue::from_str(&csp).expect("a policy is ASCII"),
        }
    }

    /// Adds the policy's headers to a response.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        );
    }
}

/// The text of every `<script>` element without a `src`, as the browser hashes it.
fn inline_scripts(html: &str) -> impl Iterator<Item = &str> {
    html.split("<script>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</script>").map(|(script, _)| script))
}

/// The dashboard's policy.
pub(crate) static DASHBOARD: LazyLock<PagePolicy> = LazyLock::new(|| PagePolicy::for_page(crate::dashboard::PAGE));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inline_scripts_without_src_are_hashed() {
        let html = "<script src=\"a.js\"></script>\n<script>let a = 1;</script><p>x</p><script>b()</script>";
        let scripts: Vec<&str> = inline_scripts(html).collect();
        assert_eq!(scripts, ["let a = 1;", "b()"]);
        let csp = PagePolicy::for_page(html).csp.to_str().unwrap().to_string();
        assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
        assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("script-src 'self' 'unsafe-inline'"));
    }
}

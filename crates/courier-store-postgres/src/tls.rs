//! TLS for Postgres connections (rustls with ring), honouring a DSN's `sslmode`
//! and `sslrootcert` the way libpq does:
//!
//! ```text
//! sslmode=disable       plain TCP
//! sslmode=prefer        (the default) TLS if the server offers it, unverified; plain
//!                       TCP if it refuses, and a warning says so
//! sslmode=require       TLS or no connection; unverified, unless sslrootcert is
//!                       given, which makes it verify-ca (as libpq does)
//! sslmode=verify-ca     TLS; the certificate must chain to a trusted root
//! sslmode=verify-full   TLS; verify-ca, and the certificate must name the host
//! sslrootcert=PATH      the trusted roots for verify-ca / verify-full (PEM); absent
//!                       or "system": the system's roots
//! ```
//!
//! Both the store's pool and the Postgres notifier's connections go through
//! [`parse_postgres_url`], so that one DSN means the same thing everywhere.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use percent_encoding::percent_decode_str;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// What a DSN's `sslmode` asks for (libpq's names; `allow` is not supported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostgresSslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server accepts it (unverified), else plain TCP with a warning.
    Prefer,
    /// TLS, unverified.
    Require,
    /// TLS, the certificate chained to a trusted root; any host name.
    VerifyCa,
    /// TLS, the certificate chained to a trusted root and naming the host.
    VerifyFull,
}

impl PostgresSslMode {
    fn parse(value: &str) -> Result<Self, PostgresUrlError> {
        match value {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(PostgresUrlError::SslMode(other.to_string())),
        }
    }

    /// The libpq name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Why a Postgres DSN cannot be used.
#[derive(Debug, Error)]
pub enum PostgresUrlError {
    /// Not a `postgres://` or `postgresql://` URL.
    #[error("a Postgres URL starts with postgres:// or postgresql://")]
    Scheme,
    /// The driver could not read it.
    #[error("cannot parse the Postgres URL: {0}")]
    Parse(String),
    /// An `sslmode` this build does not know.
    #[error("sslmode={0} is not supported: use disable, prefer, require, verify-ca or verify-full")]
    SslMode(String),
    /// A libpq TLS option this build does not honour.
    #[error("{0} is not supported (client certificates are not implemented); remove it from the URL")]
    Unsupported(String),
    /// The `sslrootcert` file could not be used.
    #[error("sslrootcert {path}: {reason}", path = .path.display())]
    RootCert {
        /// The file named.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// Verification asked for, no `sslrootcert`, and no system roots.
    #[error(
        "sslmode={0} verifies the server's certificate but no system CA certificates were found \
         (install ca-certificates, or give sslrootcert=/path/ca.pem)"
    )]
    NoSystemRoots(&'static str),
}

/// Reads a `postgres://` DSN: the driver configuration (without the TLS options
/// the driver does not know) and the TLS connector its `sslmode` and
/// `sslrootcert` call for.
pub fn parse_postgres_url(url: &str) -> Result<(tokio_postgres::Config, PostgresTls), PostgresUrlError> {
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(PostgresUrlError::Scheme);
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = PostgresSslMode::Prefer;
    let mut root_cert: Option<String> = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_decode_str(value).decode_utf8_lossy().into_owned();
        match key {
            "sslmode" => mode = PostgresSslMode::parse(&decoded)?,
            "sslrootcert" => root_cert = Some(decoded),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(PostgresUrlError::Unsupported(key.to_string()));
            }
            _ => kept.push(pair),
        }
    }
    let driver_url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config =
        tokio_postgres::Config::from_str(&driver_url).map_err(|e| PostgresUrlError::Parse(e.to_string()))?;
    // libpq: require with a root certificate verifies the chain, like verify-ca.
    if mode == PostgresSslMode::Require && root_cert.as_deref().is_some_and(|r| r != "system") {
        mode = PostgresSslMode::VerifyCa;
    }
    config.ssl_mode(match mode {
        PostgresSslMode::Disable => SslMode::Disable,
        PostgresSslMode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    let tls = PostgresTls::new(mode, root_cert.as_deref())?;
    Ok((config, tls))
}

/// The TLS side of Postgres connections, for `tokio_postgres` and
/// `deadpool_postgres`. Clones share one rustls configuration and one "plaintext
/// warned" flag, so a pool warns once, not once per connection.
#[derive(Clone)]
pub struct PostgresTls {
    mode: PostgresSslMode,
    config: Arc<rustls::ClientConfig>,
    plaintext_warned: Arc<AtomicBool>,
}

impl std::fmt::Debug for PostgresTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTls").field("mode", &self.mode).finish()
    }
}

impl PostgresTls {
    fn new(mode: PostgresSslMode, root_cert: Option<&str>) -> Result<Self, PostgresUrlError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PostgresUrlError::Parse(e.to_string()))?;
        let config = match mode {
            PostgresSslMode::Disable | PostgresSslMode::Prefer | PostgresSslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider.signature_verification_algorithms)))
                .with_no_client_auth(),
            PostgresSslMode::VerifyCa | PostgresSslMode::VerifyFull => {
                let roots = Arc::new(roots(mode, root_cert)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| PostgresUrlError::Parse(e.to_string()))?;
                let verifier: Arc<dyn ServerCertVerifier> = if mode == PostgresSslMode::VerifyCa {
                    Arc::new(AnyName(webpki))
                } else {
                    webpki
                };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth()
            }
        };
        Ok(PostgresTls {
            mode,
            config: Arc::new(config),
            plaintext_warned: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The `sslmode` in force (`require` with an `sslrootcert` reads as `verify-ca`).
    pub fn mode(&self) -> PostgresSslMode {
        self.mode
    }

    /// Whether a connection made with this (or a clone) fell back to plain TCP
    /// under `sslmode=prefer` because the server refused TLS.
    pub fn fell_back_to_plaintext(&self) -> bool {
        self.plaintext_warned.load(Ordering::Relaxed)
    }
}

/// The trusted roots: the `sslrootcert` file's certificates, or the system's.
fn roots(mode: PostgresSslMode, root_cert: Option<&str>) -> Result<rustls::RootCertStore, PostgresUrlError> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) if path != "system" => {
            let path = Path::new(path);
            let failure = |reason: String| PostgresUrlError::RootCert {
                path: path.to_path_buf(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| failure(format!("cannot read it: {e}")))?;
            for cert in certs {
                let cert = cert.map_err(|e| failure(format!("bad certificate: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| failure(format!("unusable certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(failure("holds no certificate".into()));
            }
        }
        _ => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(PostgresUrlError::NoSystemRoots(mode.as_str()));
            }
        }
    }
    Ok(roots)
}

/// `prefer` and `require` encrypt without authenticating the server, as libpq
/// does; the handshake's signatures are still checked, so the session is at least
/// bound to the certificate presented.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must verify, the name in it need not match the host.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl MakeTlsConnect<Socket> for PostgresTls {
    type Stream = PostgresTlsStream;
    type TlsConnect = PostgresTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PostgresTlsConnect, io::Error> {
        let server = ServerName::try_from(domain.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{domain:?} cannot be used as a TLS server name: {e}"),
            )
        })?;
        Ok(PostgresTlsConnect {
            tls: self.clone(),
            server: Some(server),
            domain: domain.to_string(),
        })
    }
}

/// One connection's TLS handshake. tokio-postgres makes one after the TCP
/// connection is up and drops it unused when the server refuses TLS under
/// `sslmode=prefer`: that drop is where the plaintext warning comes from.
pub struct PostgresTlsConnect {
    tls: PostgresTls,
    server: Option<ServerName<'static>>,
    domain: String,
}

impl Drop for PostgresTlsConnect {
    fn drop(&mut self) {
        if self.server.is_some()
            && self.tls.mode == PostgresSslMode::Prefer
            && !self.tls.plaintext_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                host = %self.domain,
                "the Postgres server does not accept TLS: this connection (and any like it) is PLAINTEXT \
                 (sslmode=prefer; use sslmode=require or verify-full to refuse plaintext)"
            );
        }
    }
}

impl TlsConnect<Socket> for PostgresTlsConnect {
    type Stream = PostgresTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PostgresTlsStream>> + Send>>;

    fn connect(mut self, stream: Socket) -> Self::Future {
        let server = self.server.take().expect("a TlsConnect connects once");
        let connector = tokio_rustls::TlsConnector::from(self.tls.config.clone());
        Box::pin(async move {
            connector
                .connect(server, stream)
                .await
                .map(|s| PostgresTlsStream(Box::new(s)))
        })
    }
}

/// A TLS session to Postgres.
pub struct PostgresTlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl TlsStream for PostgresTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM channel binding is optional (channel_binding=prefer); not offering
        // it keeps SCRAM working with any server certificate's signature hash.
        ChannelBinding::none()
    }
}

impl AsyncRead for PostgresTlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PostgresTlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_options_are_taken_out_of_the_driver_url() {
        let (config, tls) =
            parse_postgres_url("postgres://u@h/db?application_name=x&sslmode=require&connect_timeout=3").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(config.get_application_name(), Some("x"));
        assert_eq!(tls.mode(), PostgresSslMode::Require);

        let (config, tls) = parse_postgres_url("postgresql://u@h/db").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Prefer, "libpq's default");
        assert_eq!(tls.mode(), PostgresSslMode::Prefer);

        let (config, _) = parse_postgres_url("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn unknown_modes_and_unreadable_roots_are_refused_clearly() {
        assert!(matches!(
            parse_postgres_url("postgres://u@h/db?sslmode=allow"),
            Err(PostgresUrlError::SslMode(m)) if m == "allow"
        ));
        assert!(matches!(
            parse_postgres_url("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fnonexistent%2Fca.pem"),
            Err(PostgresUrlError::RootCert { path, .. }) if path == Path::new("/nonexistent/ca.pem")
        ));
        assert!(matches!(
            parse_postgres_url("postgres://u@h/db?sslcert=/x"),
            Err(PostgresUrlError::Unsupported(k)) if k == "sslcert"
        ));
        assert!(matches!(
            parse_postgres_url("mysql://h/db"),
            Err(PostgresUrlError::Scheme)
        ));
    }
}

//! PostgreSQL over TLS with rustls, and the connection settings runbook reads from the store URL
//! beside libpq's own.
//!
//! * `sslmode=disable` — never TLS; `prefer` (the default, as libpq's) — TLS when the server
//!   offers it, its certificate not checked; `require` — TLS or no connection, the certificate
//!   not checked (encrypted, not authenticated); `verify-full` — TLS, the certificate checked
//!   against `sslrootcert` (a PEM file of CA certificates; `system` or none: the system's CA
//!   bundle) and the host name (or IP address) in the URL checked against it.
//! * `connect_timeout=SECONDS` (default 10) and `statement_timeout=DURATION` (`30s`, `500ms`, or
//!   milliseconds like PostgreSQL's; default 30s, `0` for none), set on every connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::StoreError;

/// The default `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `statement_timeout`.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A store URL made ready: tokio-postgres's configuration and the TLS connector to use with it.
pub(crate) struct PgConnectSettings {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustls,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(text.get(i + 1..i + 3).unwrap_or(""), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads `url`: runbook's own parameters (`sslmode` beyond libpq's first three, `sslrootcert`,
/// `statement_timeout`) are taken out, the rest goes to tokio-postgres.
pub(crate) fn settings(url: &str) -> Result<PgConnectSettings, StoreError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut sslmode = "prefer".to_owned();
    let mut rootcert: Option<String> = None;
    let mut statement_timeout = STATEMENT_TIMEOUT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => sslmode = percent_decode(value),
            "sslrootcert" => rootcert = Some(percent_decode(value)),
            "statement_timeout" => {
                let value = percent_decode(value);
                statement_timeout = match value.parse::<u64>() {
                    Ok(ms) => Duration::from_millis(ms),
                    Err(_) => runbook_core::parse_duration(&value)
                        .map_err(|e| StoreError(format!("statement_timeout={value} in the store URL: {e}")))?,
                };
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| StoreError(format!("not a PostgreSQL URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if !statement_timeout.is_zero() {
        let setting = format!("-c statement_timeout={}", statement_timeout.as_millis());
        let options = match config.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {setting}"),
            _ => setting,
        };
        config.options(options);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError(format!("TLS: {e}")))?;
    let (mode, tls) = match sslmode.as_str() {
        "disable" | "prefer" | "require" => {
            let mode = match sslmode.as_str() {
                "disable" => SslMode::Disable,
                "prefer" => SslMode::Prefer,
                _ => SslMode::Require,
            };
            if rootcert.is_some() {
                return Err(StoreError(format!(
                    "sslrootcert is checked only with sslmode=verify-full (this URL says sslmode={sslmode}): write sslmode=verify-full to check the server's certificate"
                )));
            }
            let verifier = Arc::new(Unchecked(provider));
            (
                mode,
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth(),
            )
        }
        "verify-full" => {
            let roots = root_store(rootcert.as_deref())?;
            (
                SslMode::Require,
                builder.with_root_certificates(roots).with_no_client_auth(),
            )
        }
        other => {
            return Err(StoreError(format!(
                "sslmode={other} in the store URL: write disable, prefer, require or verify-full"
            )));
        }
    };
    config.ssl_mode(mode);
    Ok(PgConnectSettings {
        config,
        tls: MakeRustls { config: Arc::new(tls) },
    })
}

/// The CA certificates of `sslrootcert` (a PEM file), or of the system's bundle.
fn root_store(rootcert: Option<&str>) -> Result<rustls::RootCertStore, StoreError> {
    let path = match rootcert {
        Some(path) if path != "system" => path.to_owned(),
        _ => {
            let candidates = [
                std::env::var("SSL_CERT_FILE").unwrap_or_default(),
                "/etc/ssl/certs/ca-certificates.crt".to_owned(),
                "/etc/pki/tls/certs/ca-bundle.crt".to_owned(),
                "/etc/ssl/cert.pem".to_owned(),
            ];
            candidates
                .into_iter()
                .find(|p| !p.is_empty() && std::path::Path::new(p).is_file())
                .ok_or_else(|| {
                    StoreError(
                        "sslmode=verify-full: no system CA bundle found; name the CA file with sslrootcert=/path/to/ca.pem in the store URL"
                            .to_owned(),
                    )
                })?
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| StoreError(format!("sslrootcert={path}: cannot read it: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| StoreError(format!("sslrootcert={path}: not a PEM certificate file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| StoreError(format!("sslrootcert={path}: a certificate is unusable: {e}")))?;
    }
    if roots.is_empty() {
        return Err(StoreError(format!(
            "sslrootcert={path} holds no certificate: name a PEM file of the CA that signed the server's certificate"
        )));
    }
    Ok(roots)
}

/// For `prefer` and `require`: the connection is encrypted, the server's certificate not
/// checked (libpq does the same); the handshake's signatures still are.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Makes a rustls connector per connection, for the URL's host.
#[derive(Clone)]
pub(crate) struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{domain}: {e}")))?;
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

/// One connection's TLS handshake.
pub(crate) struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub(crate) struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
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

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runbooks_own_parameters_are_taken_out_and_defaults_set() {
        let s =
            settings("postgres://u@127.0.0.1:5432/db?options=-csearch_path%3Dx&sslmode=require&statement_timeout=2s")
                .unwrap();
        assert_eq!(s.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(
            s.config.get_options(),
            Some("-csearch_path=x -c statement_timeout=2000")
        );
        assert!(matches!(s.config.get_ssl_mode(), SslMode::Require));
        let s = settings("postgres://u@h/db?connect_timeout=3&statement_timeout=0").unwrap();
        assert_eq!(s.config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(s.config.get_options(), None);
        let e = settings("postgres://u@h/db?sslmode=verify-ca").err().unwrap();
        assert!(e.0.contains("write disable, prefer, require or verify-full"), "{e}");
        let e = settings("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem")
            .err()
            .unwrap();
        assert!(e.0.contains("sslrootcert=/nonexistent.pem: cannot read it"), "{e}");
    }
}

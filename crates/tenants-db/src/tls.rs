//! TLS to PostgreSQL, with the meaning libpq gives a connection URL's `sslmode`,
//! on both drivers.
//!
//! Every connection the crate opens (router servers of every model, the silo
//! identity checks, the migration listener, [`PgCatalog::connect`](crate::PgCatalog::connect)
//! and its `LISTEN` connection, the provisioning engine and the CLI) reads the TLS
//! parameters of its URL here, once, and configures its driver from them with
//! rustls on the aws-lc-rs crypto provider ([`crypto_provider`]).
//!
//! | URL parameter | values | meaning (libpq's, [34.19](https://www.postgresql.org/docs/current/libpq-ssl.html)) |
//! |---|---|---|
//! | `sslmode` | `disable`, `allow`, `prefer` (default), `require`, `verify-ca`, `verify-full` | see [`SslMode`] |
//! | `sslrootcert` | a PEM file, or `system` | the CAs a server certificate must chain to; `system` takes the platform's trust store and needs `verify-full`. Default: `~/.postgresql/root.crt` when it exists |
//! | `sslcert`, `sslkey` | PEM files | a client certificate and its key. Default: `~/.postgresql/postgresql.crt` and `.key` when both exist |
//! | `sslsni` | `1` (default), `0` | send the host name in the TLS handshake (SNI, [RFC 6066](https://www.rfc-editor.org/rfc/rfc6066#section-3)) |
//! | `channel_binding` | `disable`, `prefer` (default), `require` | SCRAM-SHA-256-PLUS with `tls-server-end-point` ([RFC 5929](https://www.rfc-editor.org/rfc/rfc5929)) |
//! | `sslcompression` | `0` | accepted; TLS compression is never used |
//! | `sslnegotiation` | `postgres` | accepted (the default); `direct` is refused |
//!
//! A URL that asks for verification never falls back to plain text or to an
//! unchecked certificate, and a parameter this crate cannot honour is refused with
//! [`Error::Tls`], never dropped: `sslcrl`, `sslcrldir`, `sslpassword`,
//! `sslcertmode`, `ssl_min_protocol_version`, `ssl_max_protocol_version`,
//! `sslkeylogfile`, `requiressl`, `gssencmode` and any other `ssl*` or `channel*`
//! parameter in any case (`SSLMODE`, `ssl-mode`); so is a TLS parameter given
//! twice. `PGSSLMODE` and the other environment variables of libpq are not read.
//!
//! # Drivers
//!
//! Both drivers use the same settings; where one cannot do what libpq does, the URL
//! is refused rather than weakened:
//!
//! - deadpool-postgres (tokio-postgres with `tokio-postgres-rustls`) honours every
//!   value above, `allow` included (a plain connection first, TLS when it fails)
//!   and `channel_binding=require`.
//! - sqlx cannot retry a refused plain connection with TLS, nor bind SCRAM to the
//!   channel, nor turn SNI off: `sslmode=allow`, `channel_binding=require` and
//!   `sslsni=0` are refused with [`Error::Tls`]. When it verifies a certificate, sqlx
//!   trusts the CAs of `sslrootcert` *and* the Mozilla root program's (it cannot
//!   drop them; libpq trusts the file alone), so a chain check without the host
//!   name check would accept any publicly trusted certificate: `verify-ca`, and
//!   `require` with a CA, are refused on sqlx; use `verify-full`. sqlx also reads
//!   the `PGSSLCERT` / `PGSSLKEY` / `PGSSLROOTCERT` environment variables when the
//!   URL names no file.
//!
//! Over a Unix socket, both drivers refuse `require` and stricter modes (libpq
//! ignores `sslmode` there): use `sslmode=disable` or `prefer` for socket URLs.
//!
//! # Examples
//!
//! ```
//! use tenants_db::tls::{SslMode, TlsSettings};
//!
//! let (tls, rest) = TlsSettings::from_url(
//!     "postgres://app@db.example.com/app?sslmode=require&application_name=shop",
//! )?;
//! assert_eq!(tls.mode(), SslMode::Require);
//! assert_eq!(rest, "postgres://app@db.example.com/app?application_name=shop");
//!
//! // Verification without a CA to verify against is refused at once.
//! let refused = TlsSettings::from_url("postgres://db.example.com/app?sslmode=verify-full&sslrootcert=/nonexistent.pem");
//! assert!(matches!(refused, Err(tenants_db::Error::Tls(_))));
//! # Ok::<(), tenants_db::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::Error;

/// The crypto provider of every TLS connection the crate opens: rustls on
/// aws-lc-rs, created once per process.
///
/// The crate passes it to rustls explicitly, so a build where feature unification
/// also enables another provider (ring) never fails for want of a process default.
/// When the process has no default provider yet, this one is installed as the
/// default, for the other rustls users of the process.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            // Err: another default was installed first, which stays.
            let _ = provider.clone().install_default();
            Arc::new(provider)
        })
        .clone()
}

/// libpq's `sslmode`: whether a connection uses TLS, and what it checks of the
/// server's certificate.
///
/// | mode | TLS | the certificate |
/// |---|---|---|
/// | `disable` | never | — |
/// | `allow` | only when a plain connection is refused | not checked |
/// | `prefer` | when the server offers it | not checked |
/// | `require` | always | not checked; chained to `sslrootcert` when one is given (libpq: "the same as verify-ca") |
/// | `verify-ca` | always | chained to `sslrootcert`, not expired |
/// | `verify-full` | always | as `verify-ca`, and issued for the host name of the URL |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// Plain TCP first, TLS when the server refuses it.
    Allow,
    /// TLS when the server offers it, else plain TCP. The default, as in libpq.
    Prefer,
    /// TLS, or no connection.
    Require,
    /// TLS with a certificate chained to a trusted CA.
    VerifyCa,
    /// TLS with a certificate chained to a trusted CA and issued for the host.
    VerifyFull,
}

/// libpq's `channel_binding`: whether SCRAM authentication is bound to the TLS
/// channel (`SCRAM-SHA-256-PLUS`), which defeats a man in the middle holding a
/// certificate the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBinding {
    /// Never bind.
    Disable,
    /// Bind when the server and the channel allow it. The default.
    Prefer,
    /// Bind, or no connection.
    Require,
}

/// Where trusted CA certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// The platform's trust store (`sslrootcert=system`).
    System,
}

/// The TLS parameters of one connection URL; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    mode: SslMode,
    root_cert: Option<RootCert>,
    client_cert: Option<(PathBuf, PathBuf)>,
    channel_binding: ChannelBinding,
    sni: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            root_cert: None,
            client_cert: None,
            channel_binding: ChannelBinding::Prefer,
            sni: true,
        }
    }
}

/// TLS parameters the crate reads, and those it accepts as no-ops.
const KNOWN: [&str; 8] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslsni",
    "channel_binding",
    "sslcompression",
    "sslnegotiation",
];

impl TlsSettings {
    /// Reads the TLS parameters of a `postgres://` or `postgresql://` URL, and
    /// returns them with the URL stripped of them (every other byte kept as given),
    /// for the driver's own parser.
    ///
    /// Files named by `sslrootcert`, `sslcert` and `sslkey` are read here, so a
    /// missing or unreadable file is an error now rather than at the first
    /// connection.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] naming the parameter for an unknown value, a parameter the
    /// crate cannot honour, a combination libpq refuses (`sslrootcert=system`
    /// without `verify-full`, `verify-ca` / `verify-full` with no CA, `sslcert`
    /// without `sslkey`, `channel_binding=require` with `sslmode=disable`), or a
    /// certificate or key file that cannot be read; [`Error::Config`] for a
    /// connection string that is not a URL, or whose user name or password holds
    /// a raw `?` (percent-encode it: libpq and sqlx would read it differently).
    pub fn from_url(url: &str) -> Result<(TlsSettings, String), Error> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::Config(
                "a connection string is a URL: postgres://user@host:port/database?param=value"
                    .into(),
            ));
        }
        let (base, query) = split_query(url)?;
        let mut settings = TlsSettings::default();
        let mut root_cert = None;
        let (mut cert, mut key) = (None, None);
        let mut kept = Vec::new();
        let mut seen = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let Some((name, value)) = url::form_urlencoded::parse(pair.as_bytes()).next() else {
                continue;
            };
            let known = KNOWN.contains(&name.as_ref());
            if !known && looks_like_tls(&name) {
                return Err(tls_error(format!(
                    "{name} is not supported: remove it from the URL (names are lowercase, \
                     as libpq spells them)"
                )));
            }
            if !known {
                kept.push(pair);
                continue;
            }
            if seen.contains(&name) {
                return Err(tls_error(format!("{name} is given twice")));
            }
            seen.push(name.clone());
            match name.as_ref() {
                "sslmode" => settings.mode = parse_mode(&value)?,
                "sslrootcert" => root_cert = Some(value.into_owned()),
                "sslcert" => cert = Some(PathBuf::from(value.as_ref())),
                "sslkey" => key = Some(PathBuf::from(value.as_ref())),
                "sslsni" => settings.sni = parse_flag("sslsni", &value)?,
                "channel_binding" => settings.channel_binding = parse_binding(&value)?,
                "sslcompression" if value == "0" => {}
                "sslnegotiation" if value == "postgres" => {}
                _ => {
                    return Err(tls_error(format!(
                        "{name}={value} is not supported (TLS compression is never used; \
                         negotiation is `postgres`)"
                    )));
                }
            }
        }
        // libpq's default files count only where TLS may be used.
        let defaults = settings.mode != SslMode::Disable;
        settings.root_cert = match root_cert.as_deref() {
            Some("system") => Some(RootCert::System),
            Some(path) => Some(RootCert::File(path.into())),
            None if defaults => default_file("root.crt").map(RootCert::File),
            None => None,
        };
        settings.client_cert = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) if defaults => {
                default_file("postgresql.crt").zip(default_file("postgresql.key"))
            }
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(tls_error("sslcert and sslkey are given together".into()));
            }
        };
        settings.check()?;
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((settings, rest))
    }

    /// Refuses what libpq refuses, and reads the files now.
    fn check(&self) -> Result<(), Error> {
        if self.root_cert == Some(RootCert::System) && self.mode != SslMode::VerifyFull {
            return Err(tls_error(format!(
                "sslrootcert=system needs sslmode=verify-full, not {}",
                self.mode.as_str()
            )));
        }
        if matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull) && self.root_cert.is_none()
        {
            return Err(tls_error(format!(
                "sslmode={} needs the CA to verify against: sslrootcert=<PEM file>, or \
                 sslrootcert=system for the platform's trust store",
                self.mode.as_str()
            )));
        }
        if self.mode == SslMode::Disable && self.channel_binding == ChannelBinding::Require {
            return Err(tls_error(
                "channel_binding=require needs TLS, and sslmode=disable turns it off".into(),
            ));
        }
        if let Some(RootCert::File(path)) = &self.root_cert {
            read_certificates(path)?;
        }
        if let Some((cert, key)) = &self.client_cert {
            read_certificates(cert)?;
            read_key(key)?;
        }
        Ok(())
    }

    /// The `sslmode`.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The `channel_binding`.
    pub fn channel_binding(&self) -> ChannelBinding {
        self.channel_binding
    }

    /// The `sslrootcert`, or the default file when it exists.
    pub fn root_cert(&self) -> Option<&RootCert> {
        self.root_cert.as_ref()
    }

    /// Whether the certificate's chain is checked: `verify-ca`, `verify-full`, and
    /// `require` with a CA.
    fn verifies_chain(&self) -> bool {
        match self.mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            SslMode::Require => self.root_cert.is_some(),
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => false,
        }
    }

    /// The rustls configuration for these settings: the verifier of the mode, the
    /// client certificate, SNI.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] when a file cannot be read or the platform store is empty.
    pub fn client_config(&self) -> Result<ClientConfig, Error> {
        let provider = crypto_provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.verifies_chain() {
            let roots = self.roots()?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error(e.to_string()))?;
            if self.mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyHostName(webpki))
            }
        } else {
            Arc::new(Unchecked {
                provider,
                signatures: self.channel_binding == ChannelBinding::Require,
            })
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.client_cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(read_certificates(cert)?, read_key(key)?)
                .map_err(|e| tls_error(format!("sslcert / sslkey: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.enable_sni = self.sni;
        Ok(config)
    }

    /// The trusted CAs, for a mode that verifies.
    fn roots(&self) -> Result<RootCertStore, Error> {
        let certificates = match &self.root_cert {
            Some(RootCert::File(path)) => read_certificates(path)?,
            Some(RootCert::System) => system_certificates()?,
            None => Vec::new(),
        };
        let mut roots = RootCertStore::empty();
        let (_, ignored) = roots.add_parsable_certificates(certificates);
        if roots.is_empty() {
            return Err(tls_error(format!(
                "sslrootcert holds no usable CA certificate ({ignored} unparsable)"
            )));
        }
        Ok(roots)
    }
}

impl SslMode {
    /// The mode as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The URL before its query, and the query. A `?` in the user info (before an
/// `@`) is refused: libpq reads it as part of the password, the url crate (and
/// so sqlx) as the start of the query, so the same URL would mean two things.
fn split_query(url: &str) -> Result<(&str, &str), Error> {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    if let Some(at) = url[after_scheme..authority_end].find('@')
        && url[after_scheme..after_scheme + at].contains('?')
    {
        return Err(Error::Config(
            "a `?` in the URL's user name or password: percent-encode it (%3F)".into(),
        ));
    }
    Ok(match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    })
}

/// A parameter that reads as a TLS setting in any spelling: libpq's names are
/// lowercase, but sqlx ignores names it does not know (`SSLMODE`, `ssl-mode`),
/// which would drop them silently.
fn looks_like_tls(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("ssl")
        || name.contains("channel")
        || name == "requiressl"
        || name == "gssencmode"
}

fn parse_mode(value: &str) -> Result<SslMode, Error> {
    [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ]
    .into_iter()
    .find(|mode| mode.as_str() == value)
    .ok_or_else(|| {
        tls_error(format!(
            "sslmode={value} is not one of disable, allow, prefer, require, verify-ca, verify-full"
        ))
    })
}

fn parse_binding(value: &str) -> Result<ChannelBinding, Error> {
    match value {
        "disable" => Ok(ChannelBinding::Disable),
        "prefer" => Ok(ChannelBinding::Prefer),
        "require" => Ok(ChannelBinding::Require),
        _ => Err(tls_error(format!(
            "channel_binding={value} is not one of disable, prefer, require"
        ))),
    }
}

fn parse_flag(name: &str, value: &str) -> Result<bool, Error> {
    match value {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err(tls_error(format!("{name}={value} is not 0 or 1"))),
    }
}

fn tls_error(message: String) -> Error {
    Error::Tls(message)
}

/// libpq's default location for `name`: `~/.postgresql/{name}`, when it exists.
fn default_file(name: &str) -> Option<PathBuf> {
    let path = Path::new(&std::env::var_os("HOME")?)
        .join(".postgresql")
        .join(name);
    path.is_file().then_some(path)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(tls_error(format!(
            "{}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_error(format!("{}: {e}", path.display())))
}

fn system_certificates() -> Result<Vec<CertificateDer<'static>>, Error> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found.errors.first().map(ToString::to_string);
        return Err(tls_error(format!(
            "sslrootcert=system: the platform's trust store holds no certificate{}",
            why.map(|why| format!(" ({why})")).unwrap_or_default()
        )));
    }
    Ok(found.certs)
}

/// `sslrootcert=system` for sqlx, which takes CAs as PEM: the platform's
/// certificates, PEM-encoded.
#[cfg(feature = "sqlx")]
fn system_certificates_pem() -> Result<Vec<u8>, Error> {
    use base64::Engine;
    let mut pem = String::new();
    for certificate in system_certificates()? {
        let encoded = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Ok(pem.into_bytes())
}

/// sqlx connection options for a URL, with its TLS settings applied as libpq
/// means them (see [`Sqlx::connect_options`](crate::Sqlx::connect_options)).
#[cfg(feature = "sqlx")]
pub(crate) fn sqlx_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions, Error> {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};

    // sqlx takes rustls' process default when it builds a verifier.
    crypto_provider();
    let (tls, rest) = TlsSettings::from_url(url)?;
    let refuse = |what: &str| {
        Err(tls_error(format!(
            "{what} is not supported by the sqlx driver (the deadpool driver supports it)"
        )))
    };
    if tls.verifies_chain() && tls.mode != SslMode::VerifyFull {
        // sqlx adds the Mozilla roots to `sslrootcert` and, without the host name
        // check, would take any publicly trusted certificate for any name.
        return refuse(&format!(
            "sslmode={} with a CA (sqlx would also trust every public CA, for any host \
             name; use verify-full)",
            tls.mode.as_str()
        ));
    }
    if tls.mode == SslMode::Allow {
        return refuse("sslmode=allow (a plain connection retried with TLS)");
    }
    if tls.channel_binding == ChannelBinding::Require {
        return refuse("channel_binding=require");
    }
    if !tls.sni {
        return refuse("sslsni=0");
    }
    let mut options: PgConnectOptions = rest
        .parse()
        .map_err(|e: sqlx::Error| Error::Config(format!("invalid URL: {e}")))?;
    options = options.ssl_mode(match tls.mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer | SslMode::Allow => PgSslMode::Prefer,
        SslMode::Require if tls.verifies_chain() => PgSslMode::VerifyCa,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    });
    if tls.verifies_chain() {
        options = match &tls.root_cert {
            Some(RootCert::File(path)) => options.ssl_root_cert(path),
            Some(RootCert::System) => options.ssl_root_cert_from_pem(system_certificates_pem()?),
            None => options,
        };
    }
    if let Some((cert, key)) = &tls.client_cert {
        options = options.ssl_client_cert(cert).ssl_client_key(key);
    }
    Ok(options)
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified =
            self.0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match verified {
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

/// `prefer`, `allow` and `require` without a CA: the certificate is not checked
/// (libpq's meaning). The handshake's signatures are checked only under
/// `channel_binding=require`: the binding hashes the server's certificate, so a
/// relay presenting that certificate must not pass without its key. Otherwise a
/// signature by a key nobody vouched for proves nothing, and checking it would
/// refuse what libpq accepts: webpki parses only X.509 v3 certificates, and
/// servers present v1 ones (Citus makes one on `CREATE EXTENSION citus`).
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
    signatures: bool,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.signatures {
            return Ok(HandshakeSignatureValid::assertion());
        }
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.signatures {
            return Ok(HandshakeSignatureValid::assertion());
        }
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<(TlsSettings, String), Error> {
        TlsSettings::from_url(url)
    }

    #[test]
    fn prefer_is_the_default_and_other_parameters_stay_as_given() {
        let (tls, rest) =
            parse("postgres://u:p@h:5/db?options=-c%20x%3D1&sslmode=prefer&a=b+c").unwrap();
        assert_eq!(tls.mode(), SslMode::Prefer);
        assert_eq!(rest, "postgres://u:p@h:5/db?options=-c%20x%3D1&a=b+c");
        let (tls, rest) = parse("postgresql://h/db").unwrap();
        assert_eq!(tls.mode(), SslMode::Prefer);
        assert_eq!(tls.channel_binding(), ChannelBinding::Prefer);
        assert_eq!(rest, "postgresql://h/db");
    }

    #[test]
    fn every_mode_is_read() {
        for mode in ["disable", "allow", "prefer", "require"] {
            let (tls, _) = parse(&format!("postgres://h/db?sslmode={mode}")).unwrap();
            assert_eq!(tls.mode().as_str(), mode);
        }
    }

    #[test]
    fn bad_values_and_unsupported_parameters_are_refused_by_name() {
        for (url, names) in [
            ("postgres://h/db?sslmode=verify", "sslmode=verify"),
            ("postgres://h/db?sslmode=", "sslmode="),
            ("postgres://h/db?sslcrl=/x.pem", "sslcrl"),
            ("postgres://h/db?sslpassword=x", "sslpassword"),
            (
                "postgres://h/db?ssl_min_protocol_version=TLSv1.3",
                "ssl_min_protocol_version",
            ),
            ("postgres://h/db?requiressl=1", "requiressl"),
            (
                "postgres://h/db?channel_binding=always",
                "channel_binding=always",
            ),
            ("postgres://h/db?sslsni=yes", "sslsni=yes"),
            (
                "postgres://h/db?sslnegotiation=direct",
                "sslnegotiation=direct",
            ),
            ("postgres://h/db?sslcert=/a.crt", "sslcert and sslkey"),
            (
                "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
                "/nonexistent/ca.pem",
            ),
            (
                "postgres://h/db?sslmode=require&sslrootcert=system",
                "verify-full",
            ),
            (
                "postgres://h/db?sslmode=disable&channel_binding=require",
                "channel_binding=require",
            ),
        ] {
            match parse(url) {
                Err(Error::Tls(message)) => {
                    assert!(message.contains(names), "{url}: {message}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(matches!(
            parse("host=h dbname=db sslmode=require"),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn a_question_mark_in_the_user_info_is_refused() {
        // libpq would read it as part of the password, sqlx as the query: the
        // sslmode after it would mean two things.
        for url in [
            "postgres://app:pa?ss@db.example.com/app?sslmode=require",
            "postgres://app:pa?ss@db.example.com?sslmode=require&x=1",
            "postgres://db.example.com?x=a@b&sslmode=verify-full",
        ] {
            assert!(matches!(parse(url), Err(Error::Config(_))), "{url}");
        }
        let (tls, rest) =
            parse("postgres://app:pa%3Fss@db.example.com/app?sslmode=require").unwrap();
        assert_eq!(tls.mode(), SslMode::Require);
        assert_eq!(rest, "postgres://app:pa%3Fss@db.example.com/app");
        let (tls, _) = parse("postgres://db.example.com/app?x=a@b&sslmode=require").unwrap();
        assert_eq!(tls.mode(), SslMode::Require);
    }

    #[test]
    fn tls_parameters_in_other_spellings_or_twice_are_refused() {
        for url in [
            "postgres://h/db?SSLMODE=verify-full",
            "postgres://h/db?SslRootCert=/x.pem",
            "postgres://h/db?ssl-mode=require",
            "postgres://h/db?channel-binding=require",
            "postgres://h/db?gssencmode=disable",
            "postgres://h/db?sslmode=verify-full&sslmode=disable",
            "postgres://h/db?sslm%6fde=require&sslmode=disable",
        ] {
            assert!(matches!(parse(url), Err(Error::Tls(_))), "{url}");
        }
    }

    #[test]
    fn verification_needs_a_ca() {
        // Unless ~/.postgresql/root.crt exists, which libpq would use.
        if default_file("root.crt").is_none() {
            for mode in ["verify-ca", "verify-full"] {
                let refused = parse(&format!("postgres://h/db?sslmode={mode}"));
                assert!(
                    matches!(&refused, Err(Error::Tls(m)) if m.contains("sslrootcert")),
                    "{refused:?}"
                );
            }
        }
    }

    proptest::proptest! {
        /// Any string: a typed error or settings, never a panic; what is kept of a
        /// URL is its parameters other than the TLS ones, byte for byte.
        #[test]
        fn any_url_is_read_or_refused(query in "[a-z_=&%0-9./+-]{0,60}") {
            let url = format!("postgres://u@h/db?{query}");
            if let Ok((_, rest)) = parse(&url) {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| !pair.is_empty())
                    .filter(|pair| {
                        let name = pair.split('=').next().unwrap_or_default();
                        !KNOWN.contains(&name)
                    })
                    .collect();
                let expected = if kept.is_empty() {
                    "postgres://u@h/db".to_owned()
                } else {
                    format!("postgres://u@h/db?{}", kept.join("&"))
                };
                proptest::prop_assert_eq!(rest, expected);
            }
        }

        #[test]
        fn any_string_is_read_or_refused(text in "\\PC{0,80}") {
            let _ = parse(&text);
            let _ = parse(&format!("postgres://{text}"));
        }
    }

    #[test]
    fn the_provider_is_aws_lc_rs_and_created_once() {
        assert!(Arc::ptr_eq(&crypto_provider(), &crypto_provider()));
        let (tls, _) = parse("postgres://h/db?sslmode=require").unwrap();
        let config = tls.client_config().unwrap();
        assert!(Arc::ptr_eq(config.crypto_provider(), &crypto_provider()));
    }
}

//! TLS for the agent's TCP connections to PostgreSQL (`sslmode`,
//! `sslrootcert`), with rustls: no OpenSSL at run time.
//!
//! Both clients (tokio-postgres in [`super::db`], the replication
//! connection of [`super::wire`]) negotiate the same way, here: they send
//! PostgreSQL's SSLRequest themselves, read the server's one-byte answer,
//! decide with [`negotiate`] (pure), and complete the TLS handshake,
//! certificate verification included, *before* the startup message. So no
//! password (cleartext, md5 or SCRAM) is ever sent to a server whose
//! certificate failed verification under `verify-*`: the protocol code that
//! answers an authentication request only ever sees an already verified
//! stream. tokio-postgres itself is given the finished stream and
//! `sslmode=disable`.
//!
//! The modes mean what they mean to libpq, so `primary_conninfo`, pg_rewind
//! and pg_basebackup (libpq) and the agent (rustls) agree:
//! - `disable`: no TLS;
//! - `prefer` (libpq's default): TLS when the server offers it, any
//!   certificate accepted; plain only when the server answers 'N' to the
//!   SSLRequest (never after a failed handshake);
//! - `require`: TLS or nothing, any certificate accepted; but with
//!   `sslrootcert` given it behaves as `verify-ca`, as libpq's does;
//! - `verify-ca`: the chain must lead to `sslrootcert`; the name is not
//!   checked;
//! - `verify-full`: the chain, and `primary_host` must be a DNS or IP
//!   subject alternative name of the certificate.
//!
//! Local connections (the unix socket, peer authentication) never use TLS.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, unverified.
    Prefer,
    /// TLS, unverified (verify-ca when sslrootcert is given).
    Require,
    /// TLS, the chain checked against sslrootcert.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// Every mode, in libpq's spelling.
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Reads libpq's spelling (exactly, as libpq does).
    pub fn parse(s: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the certificate's chain is checked.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TLS settings of the connections to PostgreSQL over TCP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PgTls {
    /// `sslmode` as given.
    pub mode: SslMode,
    /// `sslrootcert`: the CA certificates (PEM) that sign the servers'.
    pub rootcert: Option<PathBuf>,
}

impl PgTls {
    /// No TLS (the unix socket).
    pub const DISABLED: PgTls = PgTls {
        mode: SslMode::Disable,
        rootcert: None,
    };

    /// The mode the connections actually use: libpq's rule that `require`
    /// with a root certificate verifies the chain, as `verify-ca`.
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.rootcert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (m, _) => m,
        }
    }

    /// The conninfo words for libpq (`primary_conninfo`, pg_rewind's
    /// `--source-server`, pg_basebackup's `-d`), each value quoted:
    /// ` sslmode=... [sslrootcert=...]`, with a leading space. The effective
    /// mode is written, so libpq never falls back to its own defaults
    /// (`~/.postgresql/root.crt`). With `prefer` no root certificate is
    /// passed: libpq would verify with it and then retry in plain text.
    pub fn conninfo(&self) -> String {
        let mode = self.effective_mode();
        let mut s = format!(" sslmode={}", mode.as_str());
        if mode.verifies() {
            if let Some(p) = &self.rootcert {
                s.push_str(&format!(
                    " sslrootcert={}",
                    super::server::conninfo_value(&p.to_string_lossy())
                ));
            }
        }
        s
    }

    /// `sslmode=... sslrootcert=...` for messages.
    pub fn describe(&self) -> String {
        match &self.rootcert {
            Some(p) => format!("sslmode={} sslrootcert={}", self.mode, p.display()),
            None => format!("sslmode={}", self.mode),
        }
    }

    /// The rustls configuration for a connection to `host`, or `None` for
    /// `disable`.
    pub(crate) fn client(&self, host: &str) -> Result<Option<TlsClient>, TlsFailure> {
        let mode = self.effective_mode();
        if mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = if mode.verifies() {
            let path = self.rootcert.as_deref().ok_or_else(|| {
                TlsFailure::RootCert(
                    "no sslrootcert is set, and verify-ca/verify-full need one".into(),
                )
            })?;
            let roots = load_roots(path)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsFailure::RootCert(format!("{}: {e}", path.display())))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        } else {
            Arc::new(AcceptAny(provider.clone()))
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFailure::Handshake(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // An IP address is checked against the IP SANs, a name against the
        // DNS SANs. A host that is neither (only possible outside
        // verify-full, which needs a valid one) gets a placeholder name: it
        // is not checked then.
        let name = match ServerName::try_from(host.to_string()) {
            Ok(n) => n,
            Err(_) if mode != SslMode::VerifyFull => ServerName::try_from("localhost")
                .expect("a valid name")
                .to_owned(),
            Err(e) => {
                return Err(TlsFailure::Handshake(format!(
                    "{host:?} is not a host name: {e}"
                )))
            }
        };
        Ok(Some(TlsClient {
            config: Arc::new(config),
            name,
        }))
    }
}

/// A ready rustls configuration and the name the certificate must carry.
pub(crate) struct TlsClient {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: ServerName<'static>,
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsFailure> {
    let fail = |why: String| TlsFailure::RootCert(format!("{}: {why}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate in the file".into()));
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| fail(e.to_string()))?;
    }
    Ok(roots)
}

/// What to do with the server's answer to the SSLRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiation {
    /// Go on with the TLS handshake.
    Tls,
    /// Go on in plain text (`prefer`, server without SSL).
    Plain,
    /// Stop, before any startup message or password.
    Fail(TlsFailure),
}

/// The answer to an SSLRequest, under `mode` (not `disable`: no request is
/// sent then). 'S': TLS; 'N': plain only under `prefer`; anything else (an
/// ErrorResponse of a very old server, garbage): refused.
pub fn negotiate(mode: SslMode, answer: u8) -> Negotiation {
    match (answer, mode) {
        (b'S', _) => Negotiation::Tls,
        (b'N', SslMode::Prefer | SslMode::Disable) => Negotiation::Plain,
        (b'N', _) => Negotiation::Fail(TlsFailure::NotSupported),
        (other, _) => Negotiation::Fail(TlsFailure::Handshake(format!(
            "invalid answer {:?} to the SSL request",
            other as char
        ))),
    }
}

/// How TLS failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// `sslrootcert` cannot be used.
    RootCert(String),
    /// The server answered 'N' (ssl=off) and the mode requires TLS.
    NotSupported,
    /// The server's certificate failed verification.
    Untrusted(String),
    /// The handshake failed otherwise.
    Handshake(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::RootCert(why) => write!(f, "sslrootcert unusable: {why}"),
            TlsFailure::NotSupported => f.write_str("the server does not support SSL"),
            TlsFailure::Untrusted(why) => write!(f, "certificate rejected: {why}"),
            TlsFailure::Handshake(why) => write!(f, "handshake failed: {why}"),
        }
    }
}

impl TlsFailure {
    /// Classifies the error of a handshake (rustls's error inside the I/O
    /// error that tokio-rustls and StreamOwned return).
    pub(crate) fn of_io(e: &std::io::Error) -> TlsFailure {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(c)) => TlsFailure::Untrusted(match c {
                CertificateError::UnknownIssuer => "signed by a CA not in sslrootcert".into(),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "does not name the host connected to".into()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "expired".into()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "not valid yet".into()
                }
                other => format!("invalid: {other:?}"),
            }),
            Some(r) => TlsFailure::Handshake(r.to_string()),
            None => TlsFailure::Handshake(e.to_string()),
        }
    }
}

/// A TLS failure on the connection to `target`, with the settings in force:
/// its message says what failed, under which parameters, and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TlsError {
    /// host:port.
    pub target: String,
    /// The settings.
    pub tls: PgTls,
    /// What failed.
    pub failure: TlsFailure,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // What failed and where first: exit reasons are cut at 128
        // characters. Then the parameters, and the fix.
        let (t, s) = (&self.target, self.tls.describe());
        match &self.failure {
            TlsFailure::RootCert(why) => write!(
                f,
                "TLS to {t} not attempted: sslrootcert unusable: {why} ({s}). Fix: set \
                 sslrootcert to a PEM file with the CA certificate that signed the PostgreSQL \
                 servers' certificates"
            ),
            TlsFailure::NotSupported => write!(
                f,
                "TLS refused at primary_host {t}: the server does not support SSL ({s}); no \
                 password sent. Fix: ssl=on with ssl_cert_file and ssl_key_file on every node, \
                 or a lower sslmode"
            ),
            TlsFailure::Untrusted(why) => write!(
                f,
                "TLS refused at primary_host {t}: certificate {why} ({s}); no password sent. \
                 Fix: the server certificate must be signed by the CA in sslrootcert{}",
                if self.tls.effective_mode() == SslMode::VerifyFull {
                    " and name primary_host as a DNS or IP subject alternative name"
                } else {
                    ""
                }
            ),
            TlsFailure::Handshake(why) => write!(
                f,
                "TLS handshake failed at primary_host {t}: {why} ({s}); no password sent. Fix: \
                 check the server's ssl settings against sslmode and sslrootcert"
            ),
        }
    }
}

/// `prefer` and `require` without a root certificate: any certificate, as
/// libpq (the connection is encrypted, not authenticated). Signatures of
/// the handshake are still checked, so the server holds the key of the
/// certificate it sent.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: webpki's verification, with only a name mismatch forgiven.
/// webpki checks the chain (and validity, key usage) before the name, so
/// a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: SslMode, root: Option<&str>) -> PgTls {
        PgTls {
            mode,
            rootcert: root.map(PathBuf::from),
        }
    }

    #[test]
    fn sslmode_reads_libpqs_spellings_only() {
        for m in SslMode::ALL {
            assert_eq!(SslMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(SslMode::parse("verify_full"), None);
        assert_eq!(SslMode::parse("VERIFY-FULL"), None);
        assert_eq!(SslMode::parse("allow"), None);
        assert_eq!(SslMode::parse(""), None);
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain_as_libpq_does() {
        assert_eq!(
            tls(SslMode::Require, Some("/etc/ca.crt")).effective_mode(),
            SslMode::VerifyCa
        );
        assert_eq!(
            tls(SslMode::Require, None).effective_mode(),
            SslMode::Require
        );
        assert_eq!(
            tls(SslMode::Prefer, Some("/etc/ca.crt")).effective_mode(),
            SslMode::Prefer
        );
        assert_eq!(
            tls(SslMode::VerifyFull, Some("/etc/ca.crt")).effective_mode(),
            SslMode::VerifyFull
        );
    }

    #[test]
    fn conninfo_names_the_effective_mode_and_the_quoted_root_certificate() {
        assert_eq!(
            tls(SslMode::VerifyFull, Some("/etc/pg ca/it's.crt")).conninfo(),
            r" sslmode=verify-full sslrootcert='/etc/pg ca/it\'s.crt'"
        );
        assert_eq!(
            tls(SslMode::Require, Some("/etc/ca.crt")).conninfo(),
            " sslmode=verify-ca sslrootcert='/etc/ca.crt'"
        );
        assert_eq!(
            tls(SslMode::Prefer, Some("/etc/ca.crt")).conninfo(),
            " sslmode=prefer"
        );
        assert_eq!(tls(SslMode::Disable, None).conninfo(), " sslmode=disable");
    }

    #[test]
    fn the_answer_to_the_ssl_request_decides_tls_plain_or_refusal() {
        for m in [
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(negotiate(m, b'S'), Negotiation::Tls);
            assert!(matches!(
                negotiate(m, b'E'),
                Negotiation::Fail(TlsFailure::Handshake(_))
            ));
        }
        assert_eq!(negotiate(SslMode::Prefer, b'N'), Negotiation::Plain);
        for m in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(
                negotiate(m, b'N'),
                Negotiation::Fail(TlsFailure::NotSupported)
            );
        }
    }

    #[test]
    fn a_tls_error_names_the_target_the_parameters_and_the_fix() {
        let e = TlsError {
            target: "10.0.0.100:5432".into(),
            tls: tls(SslMode::VerifyFull, Some("/etc/rapidpro/ca.crt")),
            failure: TlsFailure::Untrusted("signed by a CA not in sslrootcert".into()),
        };
        let m = e.to_string();
        for want in [
            "10.0.0.100:5432",
            "primary_host",
            "sslmode=verify-full",
            "sslrootcert=/etc/rapidpro/ca.crt",
            "signed by a CA not in sslrootcert",
            "no password sent",
            "subject alternative name",
        ] {
            assert!(m.contains(want), "{want}: {m}");
        }
        let e = TlsError {
            failure: TlsFailure::NotSupported,
            ..e
        };
        assert!(e.to_string().contains("ssl=on"), "{e}");
    }

    #[test]
    fn verify_modes_without_a_readable_root_certificate_fail_before_connecting() {
        assert!(matches!(
            tls(SslMode::VerifyFull, None).client("db"),
            Err(TlsFailure::RootCert(_))
        ));
        assert!(matches!(
            tls(SslMode::VerifyCa, Some("/nonexistent/ca.crt")).client("db"),
            Err(TlsFailure::RootCert(_))
        ));
        assert!(tls(SslMode::Disable, None).client("db").unwrap().is_none());
        assert!(tls(SslMode::Require, None)
            .client("10.0.0.1")
            .unwrap()
            .is_some());
    }
}

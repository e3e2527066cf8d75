//! What the alert agent trusts when it speaks TLS to the mail relay and the
//! SMS gateway, and the secrets it holds for them.
//!
//! Trust: the system's CA store by default (`/etc/ssl/certs` as Debian's
//! `ca-certificates` keeps it, through rustls-native-certs, which also honours
//! `SSL_CERT_FILE`), because that is what an admin updates and expects a
//! daemon on the host to use. A CA file option (`smtp_ca_file`,
//! `sms_ca_file`) *replaces* the system store, as libpq's `sslrootcert` and
//! curl's `--cacert` do: a relay under a private CA is then trusted through
//! that CA alone, and no public CA can stand in for it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A credential from the options (a password, a token, a header value).
/// Its `Debug` never shows it and it has no `Display`, so it cannot reach
/// a message, a log line or `--json` by a stray `{}` or `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the trusted CAs come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Trust {
    /// The system's CA store.
    #[default]
    System,
    /// Only the CAs of this PEM file.
    CaFile(PathBuf),
}

impl Trust {
    /// From an optional CA file option.
    pub fn from_option(ca_file: Option<PathBuf>) -> Trust {
        ca_file.map_or(Trust::System, Trust::CaFile)
    }

    /// How messages name it.
    pub fn describe(&self) -> String {
        match self {
            Trust::System => "the system CA store".into(),
            Trust::CaFile(p) => format!("the CAs of {}", p.display()),
        }
    }

    /// The trusted CA certificates (DER), or why there are none.
    pub fn roots(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        match self {
            Trust::CaFile(p) => read_ca_file(p),
            Trust::System => {
                let found = rustls_native_certs::load_native_certs();
                if found.certs.is_empty() {
                    let why = found
                        .errors
                        .first()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default();
                    return Err(format!(
                        "no CA certificate in the system store{why} (install ca-certificates, \
                         or name a CA file with the *_ca_file option)"
                    ));
                }
                Ok(found.certs)
            }
        }
    }
}

/// The certificates of a PEM file.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("CA file {}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "CA file {}: no certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The one crypto provider: ring (aws-lc-rs needs cmake to build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let e = Trust::CaFile("/nonexistent/ca.crt".into())
            .roots()
            .unwrap_err();
        assert!(
            e.starts_with("cannot read CA file /nonexistent/ca.crt"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("alert-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.crt");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = Trust::CaFile(f.clone()).roots().unwrap_err();
        assert!(e.contains("no certificate in it"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

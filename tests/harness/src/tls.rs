//! A certificate authority made by the test, for the TLS tests of the
//! agent's PostgreSQL and Redis connections and of the alert agent.
//!
//! Why rcgen and not the `openssl` command: the certificates are built in
//! process, with no child, no configuration file and no dependence on the
//! `openssl` command's defaults (which change between Debian releases).
//! Keys are ECDSA P-256, which PostgreSQL, Redis (both on OpenSSL 3) and
//! rustls all accept.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{chown, Gid, Uid};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA whose certificate is written to `<dir>/<name>-ca.crt`.
pub struct TestCa {
    name: String,
    dir: PathBuf,
    cert: Certificate,
    key: KeyPair,
}

/// A certificate issued by a [`TestCa`], with its key, both written to files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PEM certificate file (`<dir>/<name>.crt`).
    pub cert_file: PathBuf,
    /// PEM private key file (`<dir>/<name>.key`), mode 0600.
    pub key_file: PathBuf,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl Issued {
    /// Gives both files to `uid`:`gid` (PostgreSQL refuses a key that its
    /// own user cannot read or that others can).
    pub fn chown(&self, uid: Uid, gid: Gid) {
        for f in [&self.cert_file, &self.key_file] {
            chown(f, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", f.display()));
        }
    }
}

impl TestCa {
    /// Makes a new CA named `name` and writes its certificate under `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate the CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        let ca = TestCa {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            cert,
            key,
        };
        write(&ca.ca_file(), &ca.cert.pem(), 0o644);
        ca
    }

    /// The CA certificate file (PEM), for `sslrootcert`, `tls-ca-cert-file`
    /// and the alert agent's CA option.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.crt", self.name))
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    /// Issues a certificate for server and client use, with `names` as its
    /// subject alternative names (a name that parses as an IP address
    /// becomes an IP SAN) and the first name as its common name.
    pub fn issue(&self, file_stem: &str, names: &[&str]) -> Issued {
        let key = KeyPair::generate().expect("generate a key");
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("certificate parameters");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or(file_stem),
        );
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign a certificate");
        let issued = Issued {
            cert_file: self.dir.join(format!("{file_stem}.crt")),
            key_file: self.dir.join(format!("{file_stem}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        write(&issued.cert_file, &issued.cert_pem, 0o644);
        write(&issued.key_file, &issued.key_pem, 0o600);
        issued
    }
}

/// A node's Redis TLS files, as the agent takes them: its certificate and
/// key (owned by the redis user, who must read them) and the CA file.
/// Reusable by any test that runs the agent with `redis_tls=true`, the
/// namespaced cluster's included.
#[derive(Debug, Clone)]
pub struct RedisTls {
    /// `redis_tls_ca`.
    pub ca_file: PathBuf,
    /// `redis_tls_cert` and `redis_tls_key`.
    pub node: Issued,
}

impl RedisTls {
    /// The agent parameters that turn Redis TLS on with these files.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        use rapidpro_ha::config::names::{REDIS_TLS, REDIS_TLS_CA, REDIS_TLS_CERT, REDIS_TLS_KEY};
        let s = |p: &Path| p.display().to_string();
        vec![
            (REDIS_TLS, "true".to_string()),
            (REDIS_TLS_CERT, s(&self.node.cert_file)),
            (REDIS_TLS_KEY, s(&self.node.key_file)),
            (REDIS_TLS_CA, s(&self.ca_file)),
        ]
    }
}

impl TestCa {
    /// Issues `<file_stem>.crt`/`.key` for a node's Redis, naming `names`
    /// (primary_host, the node's own address), and gives both files to the
    /// redis user, as `redis-server` reads them after dropping root.
    pub fn redis_tls(&self, file_stem: &str, names: &[&str]) -> RedisTls {
        let node = self.issue(file_stem, names);
        let user = nix::unistd::User::from_name(crate::REDIS_USER)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no system user {}", crate::REDIS_USER));
        node.chown(user.uid, user.gid);
        RedisTls {
            ca_file: self.ca_file(),
            node,
        }
    }
}

/// The `postgresql.conf` lines that make a server speak TLS with `issued`
/// (whose files the server's user must own: [`Issued::chown`]), and log
/// every connection and authentication, so a test can tell whether a
/// client ever got as far as authenticating.
pub fn pg_ssl_settings(issued: &Issued) -> String {
    format!(
        "\n# TLS (rapidpro-ha test harness)\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n\
         log_connections = on\n",
        issued.cert_file.display(),
        issued.key_file.display()
    )
}

/// A `pg_hba.conf` that admits TCP clients from `cidr` only over TLS
/// (`hostssl`, scram-sha-256) and local clients by peer: a client without
/// TLS is refused with "no pg_hba.conf entry ... no encryption".
pub fn pg_hba_hostssl_only(cidr: &str) -> String {
    format!(
        "local all all peer\n\
         hostssl all all {cidr} scram-sha-256\n\
         hostssl replication all {cidr} scram-sha-256\n"
    )
}

fn write(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_ca_issues_a_certificate_with_its_names_and_a_private_key_file() {
        let dir = crate::TestDir::new("test_ca");
        let ca = TestCa::new(dir.path(), "one");
        let issued = ca.issue("server", &["localhost", "127.0.0.1"]);
        assert!(ca.ca_file().exists());
        assert!(
            issued.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"),
            "{}",
            issued.cert_pem
        );
        assert!(issued.key_pem.contains("PRIVATE KEY"));
        let mode = fs::metadata(&issued.key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The openssl command, where present, agrees the chain verifies.
        if let Ok(out) = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(ca.ca_file())
            .arg(&issued.cert_file)
            .output()
        {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

//! TLS-only PostgreSQL clusters, with certificates made here by rcgen.

use std::path::PathBuf;
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};

use crate::{ClusterSetup, TestServer, find_bin_dir, unique_name};

/// The role a TLS cluster authenticates with SCRAM-SHA-256 (every other role is
/// trusted), for tests of `channel_binding`. Tests create it, with a password.
pub const CHANNEL_BINDING_USER: &str = "tenants_scram";

static VALID: OnceLock<TestServer> = OnceLock::new();
static EXPIRED: OnceLock<TestServer> = OnceLock::new();

/// A cluster of this process that accepts TLS connections only (`hostssl` lines in
/// `pg_hba.conf`, none for plain TCP), started on first use. Its certificate is
/// issued for `localhost` (and for no address) by a CA made for it
/// ([`TestServer::ca_file`]); its admin URL connects to `localhost` with
/// `sslmode=verify-full&sslrootcert=<that CA>`.
///
/// # Panics
///
/// Panics with installation instructions when PostgreSQL's binaries are missing.
pub fn tls_postgres() -> &'static TestServer {
    VALID.get_or_init(|| start(Validity::Current))
}

/// As [`tls_postgres`], but the server's certificate expired in 2021.
///
/// # Panics
///
/// As [`tls_postgres`].
pub fn tls_postgres_expired() -> &'static TestServer {
    EXPIRED.get_or_init(|| start(Validity::Expired))
}

/// A PEM file holding a CA certificate no test server's certificate chains to.
///
/// # Panics
///
/// Panics when the file cannot be written.
pub fn unrelated_ca_file() -> PathBuf {
    let (ca, key) = certificate_authority("unrelated test CA");
    let ca = CertifiedIssuer::self_signed(ca, key).expect("the unrelated CA signs itself");
    let path = std::env::temp_dir().join(format!("{}.pem", unique_name("unrelated_ca")));
    std::fs::write(&path, ca.pem()).expect("the unrelated CA file is written");
    path
}

#[derive(Clone, Copy)]
enum Validity {
    Current,
    Expired,
}

fn start(validity: Validity) -> TestServer {
    let bin =
        find_bin_dir().unwrap_or_else(|| panic!("initdb was not found\n\n{}", crate::INSTALL_HINT));
    match crate::Cluster::start(&bin, &setup(validity)) {
        Ok(server) => server,
        Err(why) => panic!("the TLS test cluster did not start: {why}"),
    }
}

fn setup(validity: Validity) -> ClusterSetup {
    let (ca, ca_key) = certificate_authority("tenants test CA");
    let issuer = CertifiedIssuer::self_signed(ca, ca_key).expect("the test CA signs itself");
    let key = KeyPair::generate().expect("a server key is generated");
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned()]).expect("localhost is a DNS name");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    (params.not_before, params.not_after) = match validity {
        Validity::Current => (date_time_ymd(2024, 1, 1), date_time_ymd(2099, 1, 1)),
        Validity::Expired => (date_time_ymd(2020, 1, 1), date_time_ymd(2021, 1, 1)),
    };
    let certificate = params
        .signed_by(&key, &issuer)
        .expect("the test CA signs the server certificate");
    let hba = format!(
        "local all all trust\n\
         hostssl all {CHANNEL_BINDING_USER} 127.0.0.1/32 scram-sha-256\n\
         hostssl all {CHANNEL_BINDING_USER} ::1/128 scram-sha-256\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostssl all all ::1/128 trust\n"
    );
    ClusterSetup {
        listen: "localhost",
        host: "localhost",
        options: "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into(),
        files: vec![
            ("server.crt", certificate.pem(), 0o644),
            ("server.key", key.serialize_pem(), 0o600),
            ("pg_hba.conf", hba, 0o600),
        ],
        ca_file: Some(("ca.pem", issuer.pem())),
    }
}

/// A CA's parameters and key.
fn certificate_authority(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names is valid");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params, KeyPair::generate().expect("a CA key is generated"))
}

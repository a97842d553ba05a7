//! The server's certificates and credentials: a CA, a serving certificate, an admin client
//! certificate, an admin bearer token and the key that signs service account tokens, created
//! on first start under `DIR/pki` and reused after.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create certificate {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
}

/// PEM-encoded material, as files under `DIR/pki`.
#[derive(Clone)]
pub struct Pki {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub admin_cert: String,
    pub admin_key: String,
    /// A bearer token that authenticates as the admin user.
    pub admin_token: String,
    /// The ECDSA P-256 key (PKCS#8 PEM) that signs service account tokens; created on its
    /// own when missing, so data directories from before it get one too.
    pub service_account_key: String,
}

const SERVICE_ACCOUNT_KEY: &str = "sa.key";

fn service_account_key() -> Result<String, PkiError> {
    KeyPair::generate()
        .map(|k| k.serialize_pem())
        .map_err(|source| PkiError::Generate {
            what: "service account key",
            source,
        })
}

const FILES: [&str; 6] = [
    "ca.crt",
    "server.crt",
    "server.key",
    "admin.crt",
    "admin.key",
    "admin.token",
];

impl Pki {
    /// Load the material from `dir`, creating all of it if the CA does not exist yet.
    pub fn load_or_create(dir: &Path) -> Result<Pki, PkiError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| PkiError::Io { path, source }
        };
        if !dir.join("ca.crt").exists() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let pki = Pki::generate()?;
            let contents = [
                &pki.ca_cert,
                &pki.server_cert,
                &pki.server_key,
                &pki.admin_cert,
                &pki.admin_key,
                &pki.admin_token,
                &pki.service_account_key,
            ];
            for (name, content) in FILES.iter().chain([&SERVICE_ACCOUNT_KEY]).zip(contents) {
                let path = dir.join(name);
                write_private(&path, content).map_err(io(&path))?;
            }
            return Ok(pki);
        }
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(io(&path))
        };
        let sa_path = dir.join(SERVICE_ACCOUNT_KEY);
        let service_account_key = if sa_path.exists() {
            read(SERVICE_ACCOUNT_KEY)?
        } else {
            let key = service_account_key()?;
            write_private(&sa_path, &key).map_err(io(&sa_path))?;
            key
        };
        Ok(Pki {
            service_account_key,
            ca_cert: read("ca.crt")?,
            server_cert: read("server.crt")?,
            server_key: read("server.key")?,
            admin_cert: read("admin.crt")?,
            admin_key: read("admin.key")?,
            admin_token: read("admin.token")?.trim().to_owned(),
        })
    }

    fn generate() -> Result<Pki, PkiError> {
        let err = |what| move |source| PkiError::Generate { what, source };
        let ca_key = KeyPair::generate().map_err(err("ca key"))?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "dao-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let ca_cert = ca.self_signed(&ca_key).map_err(err("ca"))?;
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().map_err(err("server key"))?;
        let mut server = CertificateParams::new(vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ])
        .map_err(err("server"))?;
        server
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        server
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        server
            .distinguished_name
            .push(DnType::CommonName, "dao-apiserver");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .map_err(err("server"))?;

        let admin_key = KeyPair::generate().map_err(err("admin key"))?;
        let mut admin = CertificateParams::default();
        admin
            .distinguished_name
            .push(DnType::CommonName, "kubernetes-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        admin.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let admin_cert = admin.signed_by(&admin_key, &issuer).map_err(err("admin"))?;

        let token_bytes: [u8; 32] = std::array::from_fn(|_| rand_byte());
        let admin_token = token_bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Pki {
            ca_cert: ca_cert.pem(),
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
            admin_cert: admin_cert.pem(),
            admin_key: admin_key.serialize_pem(),
            admin_token,
            service_account_key: service_account_key()?,
        })
    }

    /// The service account signing key as PKCS#8 DER.
    pub fn service_account_key_der(&self) -> Result<Vec<u8>, PkiError> {
        let bad = |source| PkiError::Io {
            path: PathBuf::from(SERVICE_ACCOUNT_KEY),
            source,
        };
        rustls_pemfile::pkcs8_private_keys(&mut self.service_account_key.as_bytes())
            .next()
            .ok_or_else(|| bad(std::io::Error::other("no PKCS#8 key in the file")))?
            .map(|k| k.secret_pkcs8_der().to_vec())
            .map_err(bad)
    }

    /// A kubeconfig for the admin user against `server` (an `https://` URL).
    pub fn admin_kubeconfig(&self, server: &str) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: dao
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: dao
  context:
    cluster: dao
    user: admin
    namespace: default
current-context: dao
",
            ca = b64(&self.ca_cert),
            cert = b64(&self.admin_cert),
            key = b64(&self.admin_key),
        )
    }
}

/// Random bytes from the OS through the TLS stack's generator.
fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut b)
        .expect("the OS random generator works");
    b[0]
}

/// Write a file readable only by its owner (keys and tokens).
pub fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_account_key_is_kept_and_added_to_older_directories() {
        let dir = std::env::temp_dir().join(format!("dao-pki-{}", uuid::Uuid::new_v4()));
        let first = Pki::load_or_create(&dir).unwrap();
        let again = Pki::load_or_create(&dir).unwrap();
        assert_eq!(first.service_account_key, again.service_account_key);
        assert_eq!(first.admin_token, again.admin_token);
        assert!(!first.service_account_key_der().unwrap().is_empty());
        // A data directory from before service account tokens: the rest stays, a key appears.
        std::fs::remove_file(dir.join(SERVICE_ACCOUNT_KEY)).unwrap();
        let upgraded = Pki::load_or_create(&dir).unwrap();
        assert_eq!(upgraded.ca_cert, first.ca_cert);
        assert_ne!(upgraded.service_account_key, first.service_account_key);
        assert!(dir.join(SERVICE_ACCOUNT_KEY).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Certificates made at test time with rcgen (nothing is committed): a CA, certificates it signs for
//! `127.0.0.1`/`localhost` (server and client use), written as PEM files into a directory; and a raw
//! TLS handshake, to see what a listener accepts and refuses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority whose key stays in memory.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate, PEM.
    pub cert_file: PathBuf,
}

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn cert(&self) -> &str {
        self.cert.to_str().expect("utf-8 path")
    }

    pub fn key(&self) -> &str {
        self.key.to_str().expect("utf-8 path")
    }
}

impl Ca {
    /// A new CA named `name`, its certificate written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        let cert_file = dir.join(format!("{name}.pem"));
        std::fs::write(&cert_file, cert.pem()).expect("write ca");
        Ca {
            params,
            key,
            cert_file,
        }
    }

    pub fn cert_file(&self) -> &str {
        self.cert_file.to_str().expect("utf-8 path")
    }

    /// A certificate with common name `cn` for `127.0.0.1` and `localhost`, good for servers and
    /// clients, written to `dir/<file>.pem` and `dir/<file>-key.pem`.
    pub fn issue(&self, dir: &Path, file: &str, cn: &str) -> CertFiles {
        let now = time::OffsetDateTime::now_utc();
        self.issue_valid(
            dir,
            file,
            cn,
            now - time::Duration::hours(1),
            now + time::Duration::days(30),
        )
    }

    /// As `issue`, valid from `not_before` until `not_after` (e.g. already expired).
    pub fn issue_valid(
        &self,
        dir: &Path,
        file: &str,
        cn: &str,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> CertFiles {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        let files = CertFiles {
            cert: dir.join(format!("{file}.pem")),
            key: dir.join(format!("{file}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }
}

/// Completes a TLS handshake with `addr` (and reads one byte or EOF, so that a refusal of the
/// client's certificate, which TLS 1.3 reports after the handshake, shows), trusting `ca` and
/// presenting `client` if given. Ok, with the server's certificate (DER), when the server kept the
/// connection.
pub async fn handshake(
    addr: &str,
    ca: &Path,
    client: Option<&CertFiles>,
) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(c.expect("ca pem")).expect("ca cert");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match client {
        Some(c) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&c.cert)
                    .expect("cert")
                    .map(|c| c.expect("cert pem"))
                    .collect(),
                PrivateKeyDer::from_pem_file(&c.key).expect("key"),
            )
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    // An HTTP/2 preface: the server answers with its SETTINGS when it accepted us.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .map_err(|e| e.to_string())?;
    let server_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let mut b = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut b))
        .await
        .map_err(|_| "no answer within 10 s".to_string())?;
    match read {
        Ok(1) => Ok(server_cert),
        Ok(_) => Err("the server closed the connection".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The DER of the first certificate in a PEM file.
pub fn cert_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .expect("a PEM certificate")
        .to_vec()
}

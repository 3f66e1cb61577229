//! TLS material of one listener set (the peer URLs, or the client URLs), with etcd's meaning of its
//! flags (`--peer-cert-file --peer-key-file --peer-trusted-ca-file --peer-client-cert-auth
//! --peer-auto-tls`, and the client set without the `peer-` prefix). rustls with the ring provider; no
//! OpenSSL.
//!
//! What it owns:
//! - loading a certificate chain, its key and a CA bundle (PEM) and checking that they belong
//!   together, so that a bad file is a start-up error that names it;
//! - `--*auto-tls`: a self-signed certificate for the listen hosts, written under
//!   `<data-dir>/fixtures/{peer,client}/{cert,key}.pem` and reused on restart, as etcd does;
//! - the server side (`acceptor`): ALPN, and client certificates required and verified against the
//!   CA bundle when `--*trusted-ca-file` or `--*client-cert-auth` is set (etcd's rule);
//! - the dialing side (`connect`), used by a member to reach its peers: it presents the same
//!   certificate, verifies the peer against the CA bundle, and, as etcd does for self-signed
//!   certificates, checks only the handshake's signatures when the material is auto-generated.
//!
//! Invariant: a configuration that cannot be honoured is refused when it is built; there is no
//! half-TLS listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The TLS flags of one listener set, as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
    /// `--*crl-file`: client certificates it revokes are refused.
    pub crl_file: Option<PathBuf>,
    /// `--peer-cert-allowed-cn`: a client certificate's common name must be one of these.
    pub allowed_cn: Vec<String>,
    /// `--peer-cert-allowed-hostname`: a client certificate must be valid for one of these.
    pub allowed_hostname: Vec<String>,
    /// `--cipher-suites` (Go's names; TLS 1.2 suites, as in Go: TLS 1.3's are always on).
    pub cipher_suites: Vec<String>,
    /// `--tls-min-version` / `--tls-max-version` (`TLS1.2`, `TLS1.3`; empty: both).
    pub min_version: String,
    pub max_version: String,
}

impl TlsInfo {
    /// No certificate material and no auto-TLS: the listeners can only serve `http://`.
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none() && !self.auto_tls
    }
}

/// How often the files are checked for changes (`Tls::watch`).
pub const RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The loaded material: a server configuration for the listeners and a client configuration for
/// dialing (peers), rebuilt when the files change (`watch`).
pub struct Tls {
    source: Source,
    material: parking_lot::RwLock<Material>,
    /// The files' fingerprint when they were last looked at.
    fingerprint: parking_lot::Mutex<u32>,
}

/// Which listener set the material is for (names the flags in errors and the auto-TLS directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Peer,
    Client,
}

impl Side {
    fn flag(self, name: &str) -> String {
        match self {
            Side::Peer => format!("--peer-{name}"),
            Side::Client => format!("--{name}"),
        }
    }

    fn crl_flag(self) -> &'static str {
        match self {
            Side::Peer => "--peer-crl-file",
            Side::Client => "--client-crl-file",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Side::Peer => "peer",
            Side::Client => "client",
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Go's name of a TLS 1.2 cipher suite (as `--cipher-suites` takes them) to rustls's suite.
fn tls12_suite(go_name: &str) -> Option<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match go_name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// The crypto provider and protocol versions `info` asks for: `--cipher-suites` narrows the TLS 1.2
/// suites (an unknown or unsupported name is an error that names it), `--tls-min-version` and
/// `--tls-max-version` the versions.
fn policy(
    info: &TlsInfo,
) -> Result<
    (
        Arc<CryptoProvider>,
        Vec<&'static rustls::SupportedProtocolVersion>,
    ),
    String,
> {
    let mut p = rustls::crypto::ring::default_provider();
    if !info.cipher_suites.is_empty() {
        let mut chosen: Vec<rustls::SupportedCipherSuite> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        for name in &info.cipher_suites {
            let suite = tls12_suite(name).ok_or_else(|| {
                format!(
                    "--cipher-suites: {name:?} is unknown or not supported (supported: the TLS 1.2 ECDHE suites with AES-GCM or ChaCha20-Poly1305)"
                )
            })?;
            if !chosen.contains(&suite) {
                chosen.push(suite);
            }
        }
        p.cipher_suites = chosen;
    }
    let version = |flag: &str, v: &str| -> Result<Option<u8>, String> {
        match v {
            "" => Ok(None),
            "TLS1.2" => Ok(Some(2)),
            "TLS1.3" => Ok(Some(3)),
            "TLS1.0" | "TLS1.1" => {
                Err(format!("--{flag}: {v} is not supported (TLS1.2 or TLS1.3)"))
            }
            other => Err(format!("--{flag}: unknown TLS version {other:?}")),
        }
    };
    let min = version("tls-min-version", &info.min_version)?.unwrap_or(2);
    let max = version("tls-max-version", &info.max_version)?.unwrap_or(3);
    if min > max {
        return Err(format!(
            "--tls-min-version {} is above --tls-max-version {}",
            info.min_version, info.max_version
        ));
    }
    if !info.cipher_suites.is_empty() && min == 3 {
        return Err("--cipher-suites cannot be used with --tls-min-version TLS1.3 (TLS 1.3's suites are fixed)".into());
    }
    let mut versions = Vec::new();
    if min <= 2 && max >= 2 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= 3 {
        versions.push(&rustls::version::TLS13);
    }
    Ok((Arc::new(p), versions))
}

impl Tls {
    /// Builds the material for `side` from `info`, or None when `info` is empty. `hosts` are the
    /// listen URLs' hosts (the self-signed certificate's names); `validity_years` is
    /// `--self-signed-cert-validity`.
    pub fn load(
        side: Side,
        info: &TlsInfo,
        data_dir: &Path,
        hosts: &[String],
        validity_years: u32,
    ) -> Result<Option<Arc<Tls>>, String> {
        if info.is_empty() {
            if info.client_cert_auth || info.trusted_ca_file.is_some() {
                tracing::warn!(
                    "{} / {} without {} and {}: ignored (no TLS listener)",
                    side.flag("client-cert-auth"),
                    side.flag("trusted-ca-file"),
                    side.flag("cert-file"),
                    side.flag("key-file")
                );
            }
            return Ok(None);
        }
        let (cert_file, key_file, self_signed) = match (&info.cert_file, &info.key_file) {
            (Some(c), Some(k)) => {
                if info.auto_tls {
                    tracing::warn!("ignoring {} since certs given", side.flag("auto-tls"));
                }
                (c.clone(), k.clone(), false)
            }
            (None, None) => {
                let dir = data_dir.join("fixtures").join(side.dir());
                let (c, k) = self_cert(&dir, hosts, validity_years)?;
                (c, k, true)
            }
            _ => {
                return Err(format!(
                    "{} and {} must be given together",
                    side.flag("cert-file"),
                    side.flag("key-file")
                ))
            }
        };
        let source = Source {
            side,
            info: info.clone(),
            cert_file,
            key_file,
            self_signed,
        };
        let material = source.build()?;
        tracing::info!(
            side = side.dir(),
            cert_file = %source.cert_file.display(),
            key_file = %source.key_file.display(),
            trusted_ca_file = ?info.trusted_ca_file,
            client_cert_auth = info.trusted_ca_file.is_some(),
            self_signed,
            "starting with TLS"
        );
        Ok(Some(Arc::new(Tls {
            fingerprint: parking_lot::Mutex::new(source.fingerprint()),
            source,
            material: parking_lot::RwLock::new(material),
        })))
    }
}

/// Where a `Tls`'s material comes from, so that it can be built again when its files change.
struct Source {
    side: Side,
    info: TlsInfo,
    cert_file: PathBuf,
    key_file: PathBuf,
    self_signed: bool,
}

/// The built configurations (replaced as a whole on reload).
struct Material {
    server: Arc<ServerConfig>,
    /// For dialing peers (the peer set only).
    client: Option<Arc<ClientConfig>>,
}

impl Source {
    fn files(&self) -> Vec<&Path> {
        let mut f = vec![self.cert_file.as_path(), self.key_file.as_path()];
        f.extend(self.info.trusted_ca_file.as_deref());
        f.extend(self.info.crl_file.as_deref());
        f
    }

    /// A hash of the files' contents (a missing file hashes as empty).
    fn fingerprint(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        for f in self.files() {
            h.update(f.as_os_str().as_encoded_bytes());
            h.update(&std::fs::read(f).unwrap_or_default());
        }
        h.finalize()
    }

    fn build(&self) -> Result<Material, String> {
        let (side, info, self_signed) = (self.side, &self.info, self.self_signed);
        let (cert_file, key_file) = (&self.cert_file, &self.key_file);
        let chain = load_certs(cert_file)?;
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| format!("{}: {}: {e}", side.flag("key-file"), key_file.display()))?;
        let roots = match &info.trusted_ca_file {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in load_certs(ca)? {
                    roots.add(c).map_err(|e| {
                        format!("{}: {}: {e}", side.flag("trusted-ca-file"), ca.display())
                    })?;
                }
                Some(Arc::new(roots))
            }
            None if info.client_cert_auth => {
                return Err(format!(
                    "{} needs {} (the CA that signs the clients' certificates)",
                    side.flag("client-cert-auth"),
                    side.flag("trusted-ca-file")
                ))
            }
            None => None,
        };
        let alpn: Vec<Vec<u8>> = match side {
            Side::Peer => vec![b"h2".to_vec()],
            Side::Client => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        let bad_pair = |e: rustls::Error| {
            format!(
                "{} {} and {} {}: {e}",
                side.flag("cert-file"),
                cert_file.display(),
                side.flag("key-file"),
                key_file.display()
            )
        };
        let (suites, versions) = policy(info)?;
        let names = Names {
            cn: info.allowed_cn.clone(),
            hostnames: info.allowed_hostname.clone(),
        };
        let versions = versions.as_slice();
        let server = ServerConfig::builder_with_provider(suites.clone())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?;
        let server = match &roots {
            Some(roots) => {
                let mut b = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.clone(),
                    provider(),
                );
                if let Some(crl) = &info.crl_file {
                    b = b.with_crls(load_crls(side, crl)?);
                }
                let v = b
                    .build()
                    .map_err(|e| format!("{}: {e}", side.flag("trusted-ca-file")))?;
                if names.is_empty() {
                    server.with_client_cert_verifier(v)
                } else {
                    server.with_client_cert_verifier(Arc::new(AllowedNames {
                        inner: v,
                        names: names.clone(),
                    }))
                }
            }
            None => {
                if info.crl_file.is_some()
                    || !info.allowed_cn.is_empty()
                    || !info.allowed_hostname.is_empty()
                {
                    return Err(format!(
                        "{}, {} and {} need {} (client certificates are not checked without it)",
                        side.crl_flag(),
                        side.flag("cert-allowed-cn"),
                        side.flag("cert-allowed-hostname"),
                        side.flag("trusted-ca-file")
                    ));
                }
                server.with_no_client_auth()
            }
        };
        let mut server = server
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(bad_pair)?;
        server.alpn_protocols = alpn;

        // The dialing side: only members dial (their peers), so only the peer set has one.
        let client = match side {
            Side::Client => None,
            Side::Peer => {
                let client = ClientConfig::builder_with_provider(suites.clone())
                    .with_protocol_versions(versions)
                    .map_err(|e| e.to_string())?;
                let verifier: Arc<dyn ServerCertVerifier> = match (&roots, self_signed) {
                    (_, true) => Arc::new(SignaturesOnly(provider())),
                    (Some(roots), false) => {
                        rustls::client::WebPkiServerVerifier::builder_with_provider(
                            roots.clone(),
                            provider(),
                        )
                        .build()
                        .map_err(|e| format!("{}: {e}", side.flag("trusted-ca-file")))?
                    }
                    (None, false) => {
                        return Err(format!(
                            "{} {} needs {} to verify the other members' certificates",
                            side.flag("cert-file"),
                            cert_file.display(),
                            side.flag("trusted-ca-file")
                        ))
                    }
                };
                let verifier: Arc<dyn ServerCertVerifier> = if names.is_empty() {
                    verifier
                } else {
                    Arc::new(AllowedServer {
                        inner: verifier,
                        names: names.clone(),
                    })
                };
                let client = client
                    .dangerous()
                    .with_custom_certificate_verifier(verifier);
                let mut client = client.with_client_auth_cert(chain, key).map_err(bad_pair)?;
                client.alpn_protocols = vec![b"h2".to_vec()];
                Some(Arc::new(client))
            }
        };
        Ok(Material {
            server: Arc::new(server),
            client,
        })
    }
}

impl Tls {
    /// Checks the files every `RELOAD_INTERVAL` until `stop` turns true, and builds the material
    /// again when their contents changed: new connections (accepted and dialed) use the new
    /// material, existing ones keep theirs. Material that does not build (a half-written file, a
    /// key of another certificate) is not taken: the old one stays, and why is logged once per
    /// change of the files.
    pub async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RELOAD_INTERVAL) => {}
                _ = stop.wait_for(|&s| s) => return,
            }
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }

    /// One check of `watch`; true when new material was taken.
    pub fn reload_if_changed(&self) -> bool {
        let now = self.source.fingerprint();
        {
            let mut seen = self.fingerprint.lock();
            if *seen == now {
                return false;
            }
            *seen = now;
        }
        match self.source.build() {
            Ok(m) => {
                *self.material.write() = m;
                tracing::info!(side = self.source.side.dir(), files = ?self.source.files(), "reloaded the TLS material: new connections use it");
                true
            }
            Err(e) => {
                tracing::warn!(side = self.source.side.dir(), error = %e, "the TLS files changed but do not load; keeping the material in use");
                false
            }
        }
    }

    /// Accepts TLS connections on the server side.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.material.read().server.clone())
    }

    /// Opens a TLS session to `host` (a URL's host: an IP address or a DNS name) over `io`. An alert
    /// from the other side, during the handshake or after it (TLS 1.3 servers refuse a client
    /// certificate after the client has finished), is logged and reported in etcd's words.
    pub async fn connect<IO>(&self, host: &str, io: IO) -> std::io::Result<ClientStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let client = self.material.read().client.clone().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "client TLS material does not dial",
            )
        })?;
        let peer = host.to_string();
        match tokio_rustls::TlsConnector::from(client)
            .connect(name, io)
            .await
        {
            Ok(s) => Ok(ClientStream { inner: s, peer }),
            Err(e) => Err(log_alert(&peer, go_terms(e))),
        }
    }
}

fn log_alert(peer: &str, e: std::io::Error) -> std::io::Error {
    if e.to_string().starts_with("remote error: tls:") {
        tracing::warn!(peer, error = %e, "a peer refused this member's TLS connection");
    }
    e
}

/// A client-side TLS connection whose read and write errors are in etcd's words (`go_terms`).
pub struct ClientStream<IO> {
    inner: tokio_rustls::client::TlsStream<IO>,
    peer: String,
}

impl<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncRead
    for ClientStream<IO>
{
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let me = &mut *self;
        std::pin::Pin::new(&mut me.inner)
            .poll_read(cx, buf)
            .map_err(|e| log_alert(&me.peer, go_terms(e)))
    }
}

impl<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite
    for ClientStream<IO>
{
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let me = &mut *self;
        std::pin::Pin::new(&mut me.inner)
            .poll_write(cx, buf)
            .map_err(|e| log_alert(&me.peer, go_terms(e)))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A failed handshake's error in the words etcd (Go's crypto/tls) logs it, e.g. `remote error: tls:
/// bad certificate` for an alert the other side sent; operators and etcd's tests look for these.
pub fn go_terms(e: std::io::Error) -> std::io::Error {
    use rustls::AlertDescription as A;
    let Some(rustls::Error::AlertReceived(alert)) =
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
    else {
        return e;
    };
    let what = match alert {
        A::BadCertificate => "bad certificate".to_string(),
        A::UnknownCA => "unknown certificate authority".to_string(),
        A::CertificateRevoked => "revoked certificate".to_string(),
        A::CertificateExpired => "expired certificate".to_string(),
        A::HandshakeFailure => "handshake failure".to_string(),
        A::AccessDenied => "access denied".to_string(),
        A::CertificateRequired => "certificate required".to_string(),
        A::UnsupportedCertificate => "unsupported certificate".to_string(),
        other => format!("{other:?}"),
    };
    std::io::Error::new(e.kind(), format!("remote error: tls: {what}"))
}

fn load_crls(
    side: Side,
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>, String> {
    use rustls::pki_types::CertificateRevocationListDer;
    let flag = side.crl_flag();
    let crls: Vec<_> = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| format!("{flag}: {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{flag}: {}: {e}", path.display()))?;
    if !crls.is_empty() {
        return Ok(crls);
    }
    // Not PEM: one DER-encoded CRL, as etcd also takes it.
    let der = std::fs::read(path).map_err(|e| format!("{flag}: {}: {e}", path.display()))?;
    if der.first() != Some(&0x30) {
        return Err(format!(
            "{flag}: {}: neither a PEM nor a DER X509 CRL",
            path.display()
        ));
    }
    Ok(vec![CertificateRevocationListDer::from(der)])
}

/// The handshake-signature methods of a verifier that wraps another (`inner`) and only adds checks
/// on the certificate.
macro_rules! signatures_by_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// etcd's `--peer-cert-allowed-cn` / `--peer-cert-allowed-hostname`: after the CA's verification, the
/// client certificate's common name must be one of `cn`, or the certificate valid for one of
/// `hostnames`.
/// As in etcd, the same check applies to the certificate a member's peer presents when this member
/// dials it (`AllowedServer`).
#[derive(Debug, Clone)]
struct Names {
    cn: Vec<String>,
    hostnames: Vec<String>,
}

#[derive(Debug)]
struct AllowedNames {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    names: Names,
}

impl Names {
    fn is_empty(&self) -> bool {
        self.cn.is_empty() && self.hostnames.is_empty()
    }

    /// Refuses `cert` (logged, and sent as a bad_certificate alert, as etcd's refusal is) when
    /// its names are not allowed.
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        self.allowed(cert).map_err(|why| {
            // etcd's words for this refusal, which its tests and operators look for.
            tracing::warn!(reason = %why, "refused a peer's certificate: client certificate authentication failed");
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        })
    }

    fn allowed(&self, cert: &CertificateDer<'_>) -> Result<(), String> {
        if !self.cn.is_empty() {
            let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
                .map_err(|e| format!("unparsable client certificate: {e}"))?;
            let cns: Vec<String> = parsed
                .subject()
                .iter_common_name()
                .filter_map(|a| a.as_str().ok().map(str::to_string))
                .collect();
            if !cns.iter().any(|c| self.cn.contains(c)) {
                return Err(format!(
                    "client certificate common name {cns:?} is not one of the allowed {:?}",
                    self.cn
                ));
            }
        }
        if !self.hostnames.is_empty() {
            let ee = webpki::EndEntityCert::try_from(cert)
                .map_err(|e| format!("unparsable client certificate: {e}"))?;
            let ok = self.hostnames.iter().any(|h| {
                ServerName::try_from(h.as_str())
                    .is_ok_and(|n| ee.verify_is_valid_for_subject_name(&n).is_ok())
            });
            if !ok {
                return Err(format!(
                    "client certificate is not valid for any allowed hostname {:?}",
                    self.hostnames
                ));
            }
        }
        Ok(())
    }
}

impl rustls::server::danger::ClientCertVerifier for AllowedNames {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.names.check(end_entity)?;
        Ok(verified)
    }

    signatures_by_inner!();
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// etcd's self-signed certificate: reuses `dir/cert.pem` and `dir/key.pem` when both exist, else
/// writes new ones (ECDSA P-256; the key file readable by its owner only) naming every host.
fn self_cert(
    dir: &Path,
    hosts: &[String],
    validity_years: u32,
) -> Result<(PathBuf, PathBuf), String> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut names: Vec<String> = Vec::new();
    for h in hosts {
        let h = h.trim_start_matches('[').trim_end_matches(']').to_string();
        if !h.is_empty() && !names.contains(&h) {
            names.push(h);
        }
    }
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| format!("self-signed certificate: {e}"))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "etcd");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::days(365 * i64::from(validity_years.max(1)));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("self-signed certificate key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("self-signed certificate: {e}"))?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
    tracing::info!(cert = %cert_path.display(), key = %key_path.display(), "created a self-signed certificate");
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The dialing side of `Names`: the peer's server certificate must carry an allowed name too.
#[derive(Debug)]
struct AllowedServer {
    inner: Arc<dyn ServerCertVerifier>,
    names: Names,
}

impl ServerCertVerifier for AllowedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let v = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        self.names.check(end_entity)?;
        Ok(v)
    }

    signatures_by_inner!();
}

/// For auto-generated (self-signed) peer certificates, as etcd's `InsecureSkipVerify` for them:
/// any certificate is taken, but the handshake's signatures are still checked.
#[derive(Debug)]
struct SignaturesOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for SignaturesOnly {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tls_writes_and_reuses_a_self_signed_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let info = TlsInfo {
            auto_tls: true,
            ..Default::default()
        };
        let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        assert!(Tls::load(Side::Peer, &info, dir.path(), &hosts, 1)
            .unwrap()
            .is_some());
        let cert = dir.path().join("fixtures/peer/cert.pem");
        let first = std::fs::read(&cert).unwrap();
        let key = dir.path().join("fixtures/peer/key.pem");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        Tls::load(Side::Peer, &info, dir.path(), &hosts, 1).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first, "reused on restart");
    }

    #[test]
    fn bad_material_is_refused_with_the_flag_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let info = TlsInfo {
            cert_file: Some(dir.path().join("missing.pem")),
            key_file: Some(dir.path().join("missing-key.pem")),
            ..Default::default()
        };
        let e = Tls::load(Side::Client, &info, dir.path(), &[], 1)
            .err()
            .unwrap();
        assert!(e.contains("missing.pem"), "{e}");
        let info = TlsInfo {
            cert_file: Some(dir.path().join("c.pem")),
            ..Default::default()
        };
        let e = Tls::load(Side::Peer, &info, dir.path(), &[], 1)
            .err()
            .unwrap();
        assert_eq!(
            e,
            "--peer-cert-file and --peer-key-file must be given together"
        );
        let info = TlsInfo {
            auto_tls: true,
            client_cert_auth: true,
            ..Default::default()
        };
        let e = Tls::load(Side::Client, &info, dir.path(), &[], 1)
            .err()
            .unwrap();
        assert!(
            e.starts_with("--client-cert-auth needs --trusted-ca-file"),
            "{e}"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let auto = TlsInfo {
            auto_tls: true,
            ..Default::default()
        };
        Tls::load(Side::Peer, &auto, dir.path(), &["127.0.0.1".into()], 1).unwrap();
        Tls::load(Side::Client, &auto, dir.path(), &["127.0.0.1".into()], 1).unwrap();
        let info = TlsInfo {
            cert_file: Some(dir.path().join("fixtures/peer/cert.pem")),
            key_file: Some(dir.path().join("fixtures/client/key.pem")),
            trusted_ca_file: Some(dir.path().join("fixtures/peer/cert.pem")),
            ..Default::default()
        };
        let e = Tls::load(Side::Peer, &info, dir.path(), &[], 1)
            .err()
            .unwrap();
        assert!(
            e.contains("--peer-cert-file") && e.contains("fixtures/client/key.pem"),
            "{e}"
        );
    }

    #[test]
    fn cipher_suites_and_versions_take_go_names_and_refuse_others() {
        let info = |suites: &[&str], min: &str, max: &str| TlsInfo {
            cipher_suites: suites.iter().map(|s| s.to_string()).collect(),
            min_version: min.into(),
            max_version: max.into(),
            ..Default::default()
        };
        let (p, v) = policy(&info(
            &[
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            ],
            "",
            "",
        ))
        .unwrap();
        let tls12: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            tls12,
            [
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
            ]
        );
        assert_eq!(v.len(), 2, "TLS 1.2 and 1.3");
        let e = policy(&info(&["TLS_RSA_WITH_AES_128_CBC_SHA"], "", ""))
            .err()
            .unwrap();
        assert!(
            e.starts_with(
                "--cipher-suites: \"TLS_RSA_WITH_AES_128_CBC_SHA\" is unknown or not supported"
            ),
            "{e}"
        );
        let (_, v) = policy(&info(&[], "TLS1.3", "")).unwrap();
        assert_eq!(v.len(), 1);
        let (_, v) = policy(&info(&[], "", "TLS1.2")).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(
            policy(&info(&[], "TLS1.1", "")).err().unwrap(),
            "--tls-min-version: TLS1.1 is not supported (TLS1.2 or TLS1.3)"
        );
        assert!(policy(&info(&[], "TLS1.3", "TLS1.2")).is_err());
    }

    #[test]
    fn changed_files_are_reloaded_and_broken_ones_keep_the_material_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let auto = TlsInfo {
            auto_tls: true,
            ..Default::default()
        };
        let hosts = ["127.0.0.1".to_string()];
        let tls = Tls::load(Side::Peer, &auto, dir.path(), &hosts, 1)
            .unwrap()
            .unwrap();
        assert!(!tls.reload_if_changed(), "nothing changed");
        let before = Arc::as_ptr(&tls.material.read().server);
        // Another certificate and key at the same paths.
        let other = dir.path().join("other");
        self_cert(&other, &hosts, 1).unwrap();
        let peer = dir.path().join("fixtures/peer");
        std::fs::copy(other.join("cert.pem"), peer.join("cert.pem")).unwrap();
        std::fs::copy(other.join("key.pem"), peer.join("key.pem")).unwrap();
        assert!(tls.reload_if_changed());
        let reloaded = Arc::as_ptr(&tls.material.read().server);
        assert_ne!(before, reloaded);
        // A half-written certificate: refused, the material in use stays.
        std::fs::write(peer.join("cert.pem"), "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
        assert!(!tls.reload_if_changed());
        assert_eq!(Arc::as_ptr(&tls.material.read().server), reloaded);
        assert!(
            !tls.reload_if_changed(),
            "the same broken files are not tried again"
        );
    }
}

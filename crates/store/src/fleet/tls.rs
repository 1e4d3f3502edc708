//! TLS to etcd (`https://` endpoints): the rustls client configuration made
//! from the network's PEM files (its CA the only root trusted; a client
//! certificate and key when etcd asks for one, `--client-cert-auth`), and
//! the connector that puts it under ureq. A failed handshake says which side
//! refused and which file to look at, in one line: rustls' own words alone
//! ("invalid peer certificate: UnknownIssuer") do not name the file.
//!
//! ureq's own rustls support (its "tls" feature) is not used: it compiles
//! in the public web's CAs (webpki-roots), which a fleet never trusts.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nicslice_model::EtcdTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use ureq::ReadWrite;

use crate::StoreError;

fn fail(what: String) -> StoreError {
    StoreError::Etcd(what)
}

fn read(option: &str, path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path)
        .map_err(|e| fail(format!("{option} {}: cannot read it ({e})", path.display())))
}

/// Every certificate of a PEM file, in order (a chain: the leaf first).
fn certificates(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let pem = read(option, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("{option} {}: not PEM ({e})", path.display())))?;
    if certs.is_empty() {
        return Err(fail(format!(
            "{option} {}: no certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, StoreError> {
    PrivateKeyDer::from_pem_slice(&read("--etcd-key", path)?).map_err(|e| {
        fail(format!("--etcd-key {}: no private key in it (expected PEM: {e})", path.display()))
    })
}

/// The connector for `tls`, or `None` for plain HTTP. Reads the files now:
/// a missing or unreadable one is one clear error, before any connection.
pub(super) fn connector(tls: &EtcdTls) -> Result<Option<Arc<Connector>>, StoreError> {
    if tls.is_plain() {
        return Ok(None);
    }
    let Some(ca_path) = &tls.ca else {
        return Err(fail("TLS to etcd needs --etcd-ca, the CA of its server certificate".into()));
    };
    let mut roots = RootCertStore::empty();
    for ca in certificates("--etcd-ca", ca_path)? {
        roots.add(ca).map_err(|e| {
            fail(format!("--etcd-ca {}: not a usable CA certificate ({e})", ca_path.display()))
        })?;
    }
    // ring, deprecated by rustls for lacking post-quantum key exchange in
    // favour of aws-lc-rs (a large C library for the static build); etcd
    // 3.4's Go TLS (Debian's is go1.19) offers none to agree on anyway.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS to etcd: {e}")))?
        .with_root_certificates(roots);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = certificates("--etcd-cert", cert)?;
            config.with_client_auth_cert(chain, private_key(key)?).map_err(|e| {
                fail(format!(
                    "--etcd-cert {} and --etcd-key {}: not a certificate and its key ({e})",
                    cert.display(),
                    key.display()
                ))
            })?
        }
        _ => config.with_no_client_auth(),
    };
    let refusals = Refusals { ca: ca_path.clone(), client_cert: tls.cert.is_some() };
    Ok(Some(Arc::new(Connector { config: Arc::new(config), refusals })))
}

/// Makes ureq's connections to `https://` endpoints TLS connections of
/// `config`.
pub(super) struct Connector {
    config: Arc<ClientConfig>,
    refusals: Refusals,
}

/// What a TLS error means, told from the files given.
#[derive(Clone)]
struct Refusals {
    /// The file the server's certificate is checked against.
    ca: PathBuf,
    /// Whether this host offers a client certificate.
    client_cert: bool,
}

impl Refusals {
    /// `e` in words that say who refused what; errors that are not TLS's
    /// (a timeout, a reset) pass unchanged.
    fn explain(&self, e: io::Error) -> io::Error {
        let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
            return e;
        };
        let what = match tls {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => format!(
                "certificate verification failed: etcd's server certificate is not signed by --etcd-ca {} ({tls})",
                self.ca.display()
            ),
            rustls::Error::InvalidCertificate(_) => {
                format!(
                    "certificate verification failed: etcd's server certificate refused ({tls})"
                )
            }
            rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::HandshakeFailure,
            ) if !self.client_cert => format!(
                "etcd wants a client certificate (its --client-cert-auth): give --etcd-cert and --etcd-key ({tls})"
            ),
            rustls::Error::AlertReceived(
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateRevoked
                | AlertDescription::UnsupportedCertificate,
            ) => format!(
                "etcd refused this host's certificate (--etcd-cert): not signed by its --trusted-ca-file, or expired ({tls})"
            ),
            rustls::Error::InvalidMessage(_) => {
                format!("TLS handshake failed: is etcd serving https on this port? ({tls})")
            }
            _ => format!("TLS to etcd failed ({tls})"),
        };
        io::Error::new(e.kind(), what)
    }
}

impl ureq::TlsConnector for Connector {
    fn connect(
        &self,
        dns_name: &str,
        mut io: Box<dyn ReadWrite>,
    ) -> Result<Box<dyn ReadWrite>, ureq::Error> {
        // An IPv6 endpoint arrives in its URL's brackets.
        let name = dns_name.trim_start_matches('[').trim_end_matches(']');
        let server = ServerName::try_from(name.to_string()).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("TLS to etcd: {name}: {e}"))
        })?;
        let mut conn = ClientConnection::new(self.config.clone(), server)
            .map_err(|e| io::Error::other(format!("TLS to etcd: {e}")))?;
        // The handshake now, so that its failure is the connection's, with
        // its reason; with TLS 1.3 a refused client certificate still shows
        // only at the first read (the server says so after our Finished).
        conn.complete_io(&mut io).map_err(|e| self.refusals.explain(e))?;
        Ok(Box::new(Stream { tls: StreamOwned::new(conn, io), refusals: self.refusals.clone() }))
    }
}

/// One TLS connection to an endpoint, its errors explained.
struct Stream {
    tls: StreamOwned<ClientConnection, Box<dyn ReadWrite>>,
    refusals: Refusals,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream").field("tls", &self.tls).finish_non_exhaustive()
    }
}

impl Stream {
    /// `e` explained, or what etcd said before it closed the connection:
    /// with TLS 1.3 a refused client certificate is an alert that comes
    /// after our side of the handshake ended, and our next write may meet
    /// the closed connection (a broken pipe) before a read meets the alert.
    fn reason(&mut self, e: io::Error) -> io::Error {
        let closed = matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
        );
        let from_tls = e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
        if closed
            && !from_tls
            && matches!(self.tls.conn.read_tls(&mut self.tls.sock), Ok(1..))
            && let Err(said) = self.tls.conn.process_new_packets()
        {
            return self.refusals.explain(io::Error::new(io::ErrorKind::InvalidData, said));
        }
        self.refusals.explain(e)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tls.read(buf).map_err(|e| self.reason(e))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tls.write(buf).map_err(|e| self.reason(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tls.flush().map_err(|e| self.reason(e))
    }
}

impl ReadWrite for Stream {
    fn socket(&self) -> Option<&TcpStream> {
        self.tls.get_ref().socket()
    }
}

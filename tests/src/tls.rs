//! TLS in front of a test relay, as nginx terminates it in production: a throwaway CA and
//! a server certificate for `127.0.0.1` / `localhost` made with the `openssl` command, and
//! a TLS listener on 127.0.0.1 port 0 that hands each connection's plaintext to the relay.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// A private PKI in a temporary directory: `ca` (PEM, what `relay_ca_file` names) signed
/// `cert`/`key` (the relay's); `other_ca` is a CA that signed nothing here.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command (Debian's openssl package) is needed for TLS tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// Makes the CAs and the relay certificate (P-256 keys, valid 2 days).
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(crate::cloud::unique("ponte-pki"));
        std::fs::create_dir_all(&dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [("ca", "Ponte Test CA"), ("other-ca", "Someone Else's CA")] {
            let (key, crt, subj) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend([
                "-keyout",
                &key,
                "-out",
                &crt,
                "-days",
                "2",
                "-subj",
                &subj,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(&dir, &args);
        }
        std::fs::write(
            dir.join("relay.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "relay.key",
            "-out",
            "relay.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&dir, &args);
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "relay.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "relay.ext",
                "-out",
                "relay.pem",
            ],
        );
        Self {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            cert: dir.join("relay.pem"),
            key: dir.join("relay.key"),
            dir,
        }
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        acceptor(
            &std::fs::read(&self.cert).unwrap(),
            &std::fs::read(&self.key).unwrap(),
        )
    }
}

/// A TLS server config (rustls, ring) for one certificate chain and key, both PEM: the
/// relay's front here and the TLS device in [`crate::origin`].
pub fn acceptor(cert_pem: &[u8], key_pem: &[u8]) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// A TLS listener on 127.0.0.1 (port 0) that terminates TLS with `pki`'s relay
/// certificate and copies each connection to `backend` (a plain relay), as nginx does.
/// Handshakes that fail (a client that does not trust the CA) are dropped.
pub async fn tls_front(pki: &Pki, backend: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = pki.acceptor();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

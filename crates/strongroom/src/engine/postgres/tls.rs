//! TLS for strongroom's own SQL connections, with libpq's `sslmode` meanings.
//!
//! Managed services (RDS with `rds.force_ssl`, Azure, Heroku) refuse unencrypted sessions,
//! so the control connection must speak TLS as `pg_dump` does. libpq's modes: `prefer` (the
//! default) and `require` encrypt without checking the certificate; `verify-ca` checks the
//! chain against `sslrootcert` (or `~/.postgresql/root.crt`, else the system's roots);
//! `verify-full` also checks the host name. Must not decide when to connect.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, SignatureScheme,
};
use std::path::Path;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How a connection checks the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Encrypt, accept any certificate (`prefer`, `require`).
    Nothing,
    /// Check the chain, not the name (`verify-ca`).
    Chain,
    /// Check the chain and the host name (`verify-full`).
    Full,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts any certificate but still checks the handshake signatures (libpq's `require`).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
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
    ) -> Result<HandshakeSignatureValid, TlsError> {
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

/// Checks the chain but tolerates a name mismatch (libpq's `verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(
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
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A TLS connector for `verify`, trusting `root_cert` (PEM) when given, presenting the
/// client certificate and key `client` (PEM) when given.
pub fn connector(
    verify: Verify,
    root_cert: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<MakeRustlsConnect, String> {
    Ok(MakeRustlsConnect::new(client_config(
        verify, root_cert, client,
    )?))
}

/// The rustls client configuration behind [`connector`], for connections strongroom drives
/// itself (the replication protocol's blocking stream).
pub fn client_config(
    verify: Verify,
    root_cert: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider()))),
        Verify::Chain | Verify::Full => {
            let mut roots = rustls::RootCertStore::empty();
            match root_cert {
                Some(p) => {
                    let certs = CertificateDer::pem_file_iter(p)
                        .map_err(|e| format!("reading sslrootcert {}: {e}", p.display()))?;
                    for c in certs {
                        let c =
                            c.map_err(|e| format!("reading sslrootcert {}: {e}", p.display()))?;
                        roots
                            .add(c)
                            .map_err(|e| format!("sslrootcert {}: {e}", p.display()))?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    for c in found.certs {
                        let _ = roots.add(c);
                    }
                }
            }
            if roots.is_empty() {
                return Err(
                    "no trusted root certificates to verify the server with; set sslrootcert"
                        .into(),
                );
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| e.to_string())?;
            let verifier: Arc<dyn ServerCertVerifier> = if verify == Verify::Full {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
    };
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("reading sslcert {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "sslcert {} holds no PEM certificate",
                    cert.display()
                ));
            }
            let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                format!(
                    "reading sslkey {}: {e}; it must be an unencrypted PEM key (PKCS#1, PKCS#8 \
                     or SEC1); decrypt an encrypted one with `openssl pkey`",
                    key.display()
                )
            })?;
            builder.with_client_auth_cert(chain, private).map_err(|e| {
                format!(
                    "sslcert {} and sslkey {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?
        }
    };
    Ok(config)
}

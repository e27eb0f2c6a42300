//! The client end of a request to a destination sidecar: what the source
//! pod's sidecar (or, without one, the source container) sends to the
//! destination Envoy over loopback.
//!
//! The connection opens with a PROXY protocol v1 header naming the source
//! pod's IP (as the API shows it) and the destination pod IP and port, which
//! Envoy's `proxy_protocol` listener filter turns into the connection's
//! remote and local addresses: RBAC's `source.ip`/`ipBlocks`,
//! `destination.port` and the filter chain match all see the pods'
//! addresses, as they would after iptables' redirect in a cluster. A source
//! with a sidecar then speaks mTLS with its service account's certificate
//! (SNI `outbound_.PORT_._.HOST`, as Istio's outbound cluster sends); a
//! source without one speaks plain text. The server certificate is not
//! checked against a name: Istio's client checks the SPIFFE identity, which
//! meshsim's simulated outbound side does not model.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::certs::Identity;
use super::httpc::{self, HttpError, Response};

/// How the connection is opened.
#[derive(Debug, Clone)]
pub struct Dial {
    pub inbound: SocketAddr,
    pub source_ip: IpAddr,
    pub source_port: u16,
    pub destination_ip: IpAddr,
    pub destination_port: u16,
    /// mTLS with this identity (the source sidecar's), or plain text.
    pub mtls: Option<(Arc<Identity>, String)>,
}

fn proxy_header(d: &Dial) -> String {
    let family = match (d.source_ip, d.destination_ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) => "TCP4",
        _ => "TCP6",
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        d.source_ip, d.destination_ip, d.source_port, d.destination_port
    )
}

#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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

fn tls_config(id: &Identity) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(
            vec![CertificateDer::from(id.cert_der.clone())],
            PrivateKeyDer::Pkcs8(id.key_der.clone().into()),
        )?;
    c.alpn_protocols = vec![
        b"istio-http/1.1".to_vec(),
        b"istio".to_vec(),
        b"http/1.1".to_vec(),
    ];
    Ok(c)
}

/// Sends one HTTP request through the destination sidecar.
pub async fn send(
    d: &Dial,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Result<Response, HttpError> {
    let mut tcp = TcpStream::connect(d.inbound).await?;
    let _ = tcp.set_nodelay(true);
    tcp.write_all(proxy_header(d).as_bytes()).await?;
    match &d.mtls {
        None => httpc::exchange(&mut tcp, method, path, headers, body).await,
        Some((id, sni)) => {
            let cfg = tls_config(id).map_err(|e| HttpError::Malformed(e.to_string()))?;
            let name = ServerName::try_from(sni.clone())
                .unwrap_or_else(|_| ServerName::try_from("outbound").expect("valid name"));
            let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
            let mut tls = connector
                .connect(name, tcp)
                .await
                .map_err(|_| HttpError::Reset)?;
            httpc::exchange(&mut tls, method, path, headers, body).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_v1_header() {
        let d = Dial {
            inbound: "127.0.0.1:1".parse().unwrap(),
            source_ip: "10.244.0.5".parse().unwrap(),
            source_port: 40000,
            destination_ip: "10.244.0.7".parse().unwrap(),
            destination_port: 80,
            mtls: None,
        };
        assert_eq!(
            proxy_header(&d),
            "PROXY TCP4 10.244.0.5 10.244.0.7 40000 80\r\n"
        );
    }
}

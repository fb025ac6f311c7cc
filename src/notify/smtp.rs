//! The SMTP client: lettre's protocol on a socket opened here.
//!
//! lettre's transport opens its sockets without `TCP_NODELAY` and writes a
//! message and its `<CRLF>.<CRLF>` terminator separately, so the terminator
//! waits in the socket until the server acknowledges the message — and the
//! server, with nothing to answer yet, delays that ACK by ~40 ms on Linux:
//! every mail was 40 ms late (BENCHMARKS.md). Here the socket is opened with
//! `TCP_NODELAY` and handed to lettre's [`AsyncSmtpConnection`], which does
//! the protocol (EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA). One connection is
//! kept between mails and tested with NOOP before reuse, as lettre's pool
//! does. For implicit TLS (`tls = "tls"`, port 465) the socket is wrapped
//! in TLS here (rustls, the provider and roots lettre uses) before lettre
//! sees it; STARTTLS stays lettre's, on the socket opened here.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Why a mail was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to the SMTP server")]
    Connect(#[source] std::io::Error),
    #[error("TLS handshake with the SMTP server failed")]
    Handshake(#[source] std::io::Error),
    #[error("the SMTP server did not answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Smtp(#[from] lettre::transport::smtp::Error),
}

impl SendError {
    /// A 5xx reply: sending again will not help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Smtp(e) if e.is_permanent())
    }
}

/// How the connection is encrypted.
#[derive(Clone)]
pub enum Encryption {
    None,
    /// Plain connect, then STARTTLS (required).
    StartTls(TlsParameters),
    /// TLS from the first byte.
    Implicit(ImplicitTls),
}

/// What implicit TLS needs: the client configuration and the name the
/// server's certificate must carry.
#[derive(Clone)]
pub struct ImplicitTls {
    config: Arc<rustls::ClientConfig>,
    server: ServerName<'static>,
}

/// Why implicit TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("`{0}` is not a host name or IP address a certificate can be checked against")]
    ServerName(String),
    #[error("the CA file holds no readable certificate")]
    Pem(#[source] rustls::pki_types::pem::Error),
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

impl ImplicitTls {
    /// Trusts the web PKI's roots and, when given, the certificates of
    /// `ca_pem` (a private CA), like lettre's STARTTLS parameters.
    pub fn new(host: &str, ca_pem: Option<&[u8]>) -> Result<Self, TlsSetupError> {
        let server = ServerName::try_from(host.to_string())
            .map_err(|_| TlsSetupError::ServerName(host.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = ca_pem {
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots.add(cert.map_err(TlsSetupError::Pem)?)?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ImplicitTls {
            config: Arc::new(config),
            server,
        })
    }
}

/// A TLS session on a socket of ours, as lettre takes a stream.
#[derive(Debug)]
struct TlsSocket(TlsStream<TcpStream>);

impl AsyncTokioStream for TlsSocket {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for TlsSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Sends mails over one reused connection.
pub struct Transport {
    host: String,
    port: u16,
    encryption: Encryption,
    /// For connecting and for each exchange with the server.
    timeout: Duration,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Option<AsyncSmtpConnection>>,
}

impl Transport {
    pub fn new(
        host: String,
        port: u16,
        encryption: Encryption,
        timeout: Duration,
        credentials: Option<Credentials>,
    ) -> Self {
        Transport {
            host,
            port,
            encryption,
            timeout,
            credentials,
            hello: ClientId::default(),
            idle: Mutex::new(None),
        }
    }

    /// Sends one mail; the server's reply once it accepted it.
    pub async fn send(&self, message: Message) -> Result<Response, SendError> {
        let envelope = message.envelope().clone();
        let body = message.formatted();
        let mut idle = self.idle.lock().await;
        let mut conn = match idle.take() {
            Some(mut conn) => match self.within(conn.test_connected()).await {
                Ok(true) => conn,
                _ => {
                    let _ = self.within(conn.abort()).await;
                    self.connect().await?
                }
            },
            None => self.connect().await?,
        };
        // lettre abandons the connection itself after an error reply.
        let response = self.within(conn.send(&envelope, &body)).await??;
        *idle = Some(conn);
        Ok(response)
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let socket = self
            .within(TcpStream::connect((self.host.as_str(), self.port)))
            .await?
            .map_err(SendError::Connect)?;
        socket.set_nodelay(true).map_err(SendError::Connect)?;
        let stream: Box<dyn AsyncTokioStream> = match &self.encryption {
            Encryption::Implicit(tls) => {
                let connector = TlsConnector::from(tls.config.clone());
                let session = self
                    .within(connector.connect(tls.server.clone(), socket))
                    .await?
                    .map_err(SendError::Handshake)?;
                Box::new(TlsSocket(session))
            }
            Encryption::None | Encryption::StartTls(_) => Box::new(socket),
        };
        let mut conn = self
            .within(AsyncSmtpConnection::connect_with_transport(
                stream,
                &self.hello,
            ))
            .await??;
        if let Encryption::StartTls(tls) = &self.encryption {
            self.within(conn.starttls(tls.clone(), &self.hello))
                .await??;
        }
        if let Some(credentials) = &self.credentials {
            self.within(conn.auth(DEFAULT_MECHANISMS, credentials))
                .await??;
        }
        Ok(conn)
    }

    async fn within<T>(&self, work: impl Future<Output = T>) -> Result<T, SendError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| SendError::Timeout(self.timeout))
    }
}

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
//! does. Implicit TLS (`tls = "tls"`, port 465) still connects through
//! lettre, which wraps the socket in TLS itself: it keeps the delay.

use std::time::Duration;

use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Why a mail was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to the SMTP server")]
    Connect(#[source] std::io::Error),
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
    Implicit(TlsParameters),
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
        let mut conn = match &self.encryption {
            Encryption::Implicit(tls) => {
                self.within(AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(self.timeout),
                    &self.hello,
                    Some(tls.clone()),
                    None,
                ))
                .await??
            }
            plain_first => {
                let socket = self
                    .within(TcpStream::connect((self.host.as_str(), self.port)))
                    .await?
                    .map_err(SendError::Connect)?;
                socket.set_nodelay(true).map_err(SendError::Connect)?;
                let mut conn = self
                    .within(AsyncSmtpConnection::connect_with_transport(
                        Box::new(socket),
                        &self.hello,
                    ))
                    .await??;
                if let Encryption::StartTls(tls) = plain_first {
                    self.within(conn.starttls(tls.clone(), &self.hello))
                        .await??;
                }
                conn
            }
        };
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

//! Delivers the outbox to responders over SMTP (lettre).
//!
//! Rows are written by the store in the same transaction as the transitions
//! they announce; this sender drains them. Transitions of one incident that
//! arrive within `group_wait` go out as one mail; beyond `max_per_hour` mails
//! per protocol, one digest carries the overflow. Temporary failures (4xx,
//! timeouts, refused or dropped connections) are retried with exponential
//! backoff and jitter; permanent ones (5xx) mark the row failed with the
//! server's reply. Each mail has a stable Message-ID per (incident,
//! transition), and later mails of an incident thread under the first.

pub mod email;
mod message;
mod smtp;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lettre::Message;
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::transport::smtp::response::Response;
use rand::Rng;
use tokio::sync::mpsc;

use crate::config::{Config, EmailConfig, TlsMode};
use crate::lease::this_replica;
use crate::model::ProtocolState;
use crate::store::{IncidentRecord, OutboxItem, Store, StoreError, now_ms};
use crate::telemetry;

/// The longest wait between two delivery attempts of one mail.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);
/// How often the outbox is looked at when nothing wakes the sender.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// The shortest claim on a mail: a sender that died holding one delays
/// that mail by this much, and a send never outlasts it.
const CLAIM_AT_LEAST_MS: i64 = 60_000;

use message::build;
pub use message::history_head_line;
pub use smtp::{SendError, Transport};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot set up SMTP to {host}:{port}")]
    Setup {
        host: String,
        port: u16,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("cannot set up TLS to {host}:{port}")]
    TlsSetup {
        host: String,
        port: u16,
        #[source]
        source: smtp::TlsSetupError,
    },
    #[error("environment variable {var} (email.password_env) is not set")]
    Password { var: String },
    #[error("cannot build the mail")]
    Build(#[source] lettre::error::Error),
    #[error("bad recipient address `{0}`")]
    Recipient(String),
    #[error("SMTP delivery failed")]
    Send(#[source] SendError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds the SMTP transport; the password is read from the environment here.
pub fn transport(cfg: &EmailConfig) -> Result<Transport, NotifyError> {
    let setup = |source| NotifyError::Setup {
        host: cfg.smtp_host.clone(),
        port: cfg.smtp_port,
        source,
    };
    let tls = || {
        let mut params = TlsParameters::builder(cfg.smtp_host.clone());
        if let Some(pem) = &cfg.ca_pem {
            params = params.add_root_certificate(Certificate::from_pem(pem).map_err(setup)?);
        }
        params.build().map_err(setup)
    };
    let encryption = match cfg.tls {
        TlsMode::None => smtp::Encryption::None,
        TlsMode::StartTls => smtp::Encryption::StartTls(tls()?),
        TlsMode::Tls => smtp::Encryption::Implicit(
            smtp::ImplicitTls::new(&cfg.smtp_host, cfg.ca_pem.as_deref()).map_err(|source| {
                NotifyError::TlsSetup {
                    host: cfg.smtp_host.clone(),
                    port: cfg.smtp_port,
                    source,
                }
            })?,
        ),
    };
    let credentials = match &cfg.username {
        Some(user) => {
            let password = match &cfg.password_env {
                Some(var) => {
                    std::env::var(var).map_err(|_| NotifyError::Password { var: var.clone() })?
                }
                None => String::new(),
            };
            Some(Credentials::new(user.clone(), password))
        }
        None => None,
    };
    Ok(Transport::new(
        cfg.smtp_host.clone(),
        cfg.smtp_port,
        encryption,
        cfg.timeout,
        credentials,
    ))
}

/// `haltwatch send-test-email`: one mail end to end; returns the server's reply.
pub async fn send_test(cfg: &EmailConfig, to: &str) -> Result<Response, NotifyError> {
    let to: Mailbox = to
        .parse()
        .map_err(|_| NotifyError::Recipient(to.to_string()))?;
    let message = Message::builder()
        .from(cfg.from.clone())
        .to(to)
        .subject("haltwatch test email")
        .singlepart(SinglePart::plain(
            "This is a test email from haltwatch: the SMTP settings work.\n".to_string(),
        ))
        .map_err(NotifyError::Build)?;
    transport(cfg)?
        .send(message)
        .await
        .map_err(NotifyError::Send)
}

/// The domain part of an address, for logs that must not name recipients.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("?", |(_, d)| d)
}

/// Who reports the sender's store problems on `/readyz`.
const SENDER: &str = "mail sender";

/// Drains the outbox until every wake-up sender is gone.
pub struct Notifier {
    config: Arc<Config>,
    email: EmailConfig,
    store: Store,
    transport: Transport,
    /// Where a store that cannot be read or written is reported.
    status: crate::status::Status,
}

impl Notifier {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        status: crate::status::Status,
    ) -> Result<Option<Self>, NotifyError> {
        let Some(email) = config.email.clone() else {
            return Ok(None);
        };
        let transport = transport(&email)?;
        Ok(Some(Notifier {
            config,
            email,
            store,
            transport,
            status,
        }))
    }

    /// Sends what is due whenever woken (or every `IDLE_POLL`); when the
    /// wake channel closes, makes one last pass and returns. What is still
    /// pending then stays in the outbox for the next start.
    pub async fn run(self, mut wake: mpsc::Receiver<()>) -> Result<(), NotifyError> {
        loop {
            self.pass_or_wait().await?;
            tokio::select! {
                woken = wake.recv() => if woken.is_none() {
                    return self.pass_or_wait().await;
                },
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    /// One pass; a store that cannot be read now is reported and tried
    /// again at the next pass (what is due stays due), not an end.
    async fn pass_or_wait(&self) -> Result<(), NotifyError> {
        match self.pass().await {
            Err(NotifyError::Store(e)) if e.is_transient() => {
                crate::telemetry::store_unavailable("read outbox");
                tracing::warn!(error = %e, "the outbox cannot be read now; trying again at the next pass");
                self.status
                    .store_problem(SENDER, Some(format!("read outbox: {e}")));
                Ok(())
            }
            other => {
                if other.is_ok() {
                    self.status.store_problem(SENDER, None);
                }
                other
            }
        }
    }

    /// Records what became of a mail: retried until the store takes it,
    /// since a mail accepted but not marked sent would be sent again.
    async fn record<F, Fut>(&self, operation: &'static str, op: F) -> Result<(), NotifyError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        crate::store::retry::until_stored(
            operation,
            |reason| self.status.store_problem(SENDER, reason),
            op,
        )
        .await
        .map_err(NotifyError::Store)
    }

    /// One look at the outbox: sends every group that is due.
    pub async fn pass(&self) -> Result<(), NotifyError> {
        let now = now_ms();
        telemetry::outbox_depth(self.store.outbox_pending().await?);
        let due = self.store.outbox_due(now).await?;
        let mut groups: BTreeMap<i64, Vec<OutboxItem>> = BTreeMap::new();
        for item in due {
            groups.entry(item.incident_id).or_default().push(item);
        }
        let wait = self.email.group_wait.as_millis() as i64;
        let mut digests: BTreeMap<String, Vec<Vec<OutboxItem>>> = BTreeMap::new();
        let hour_ago = now - 3_600_000;
        for (_, group) in groups {
            // Wait until the oldest transition has waited `group_wait`.
            if group.iter().all(|i| i.attempts == 0) && now - group[0].created_ms < wait {
                continue;
            }
            // Replicas share the outbox: send only what this one claimed.
            let group = self.claim(group).await?;
            if group.is_empty() {
                continue;
            }
            let protocol = group[0].protocol.clone();
            let sent = self.store.mails_sent_since(&protocol, hour_ago).await?;
            if sent >= i64::from(self.email.max_per_hour) {
                digests.entry(protocol).or_default().push(group);
                continue;
            }
            self.deliver_incident(group).await?;
        }
        for (protocol, groups) in digests {
            // One digest per hour beyond the cap; the rest waits for the window to slide.
            let sent = self.store.mails_sent_since(&protocol, hour_ago).await?;
            if sent == i64::from(self.email.max_per_hour) {
                self.deliver_digest(&protocol, groups).await?;
            }
        }
        for notice in self.store.notices_due(now).await? {
            let until = now_ms() + self.claim_ms();
            if self
                .store
                .notice_claim(notice.id, this_replica(), until)
                .await?
            {
                self.deliver_notice(notice).await?;
            }
        }
        Ok(())
    }

    /// How long a claim keeps other senders off: longer than any send.
    fn claim_ms(&self) -> i64 {
        let timeout = i64::try_from(self.email.timeout.as_millis()).unwrap_or(i64::MAX / 4);
        (timeout * 3).max(CLAIM_AT_LEAST_MS)
    }

    /// The mails of `group` this sender now holds a claim on: replicas
    /// share the outbox, and one mail goes out through one of them.
    async fn claim(&self, mut group: Vec<OutboxItem>) -> Result<Vec<OutboxItem>, NotifyError> {
        let ids: Vec<i64> = group.iter().map(|i| i.id).collect();
        let until = now_ms() + self.claim_ms();
        let claimed = self.store.outbox_claim(&ids, this_replica(), until).await?;
        group.retain(|i| claimed.contains(&i.id));
        Ok(group)
    }

    /// A notice about a chain goes to the responders of every protocol on it
    /// (each address once), outside the per-protocol hourly cap: it is rare
    /// and about the monitor itself.
    async fn deliver_notice(&self, notice: crate::store::Notice) -> Result<(), NotifyError> {
        let on_chain: Vec<&crate::config::ProtocolConfig> = self
            .config
            .protocols
            .iter()
            .filter(|p| self.config.chains[p.chain].chain_id == notice.chain_id)
            .collect();
        let mut recipients: Vec<String> = Vec::new();
        for p in &on_chain {
            for r in p.recipients(ProtocolState::Halted) {
                if !recipients.contains(&r) {
                    recipients.push(r);
                }
            }
        }
        if recipients.is_empty() {
            let why = "no protocol on the chain has responders";
            return Ok(self
                .store
                .notice_attempted(notice.id, Some(why), None)
                .await?);
        }
        let names: Vec<&str> = on_chain.iter().map(|p| p.name.as_str()).collect();
        let rendered = email::render_notice(&notice.chain, &names, &notice.body);
        let message_id = self.message_id(&notice.message_id);
        let head = self.store.ledger_head().await?;
        let message = match build(
            &self.email.from,
            &recipients,
            &message_id,
            None,
            head,
            rendered,
        ) {
            Ok(m) => m,
            Err(e) => {
                let why = e.to_string();
                return Ok(self
                    .store
                    .notice_attempted(notice.id, Some(&why), None)
                    .await?);
            }
        };
        match self.transport.send(message).await {
            Ok(_) => {
                tracing::info!(chain = %notice.chain, kind = %notice.kind, recipients = recipients.len(), "notice sent");
                self.record("mark notice sent", || {
                    self.store.notice_attempted(notice.id, None, None)
                })
                .await?;
            }
            Err(e) if e.is_permanent() => {
                let reply = smtp_reply(&e);
                tracing::error!(chain = %notice.chain, reply = %reply, "notice rejected permanently");
                self.record("mark notice failed", || {
                    self.store.notice_attempted(notice.id, Some(&reply), None)
                })
                .await?;
            }
            Err(e) => {
                let reply = smtp_reply(&e);
                let retry_at = now_ms()
                    + retry_delay(self.email.retry_initial, notice.attempts).as_millis() as i64;
                tracing::warn!(chain = %notice.chain, reply = %reply, "notice delivery failed; will retry");
                self.record("schedule notice retry", || {
                    self.store
                        .notice_attempted(notice.id, Some(&reply), Some(retry_at))
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Who is mailed about `protocol`'s incidents that reached `severity`.
    fn recipients(&self, protocol: &str, severity: ProtocolState) -> Vec<String> {
        self.config
            .protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.recipients(severity))
            .unwrap_or_default()
    }

    fn message_id(&self, id: &str) -> String {
        format!("<haltwatch.{id}@{}>", self.email.from.email.domain())
    }

    fn explorer(&self, incident: &IncidentRecord) -> Option<&str> {
        self.config
            .chains
            .iter()
            .find(|c| c.chain_id == incident.chain_id)
            .and_then(|c| c.explorer_tx_url.as_deref())
    }

    async fn deliver_incident(&self, group: Vec<OutboxItem>) -> Result<(), NotifyError> {
        let ids: Vec<i64> = group.iter().map(|i| i.id).collect();
        let Some(incident) = self.store.incident(group[0].incident_id).await? else {
            self.store.outbox_failed(&ids, "incident not found").await?;
            return Ok(());
        };
        let kinds: Vec<String> = group.iter().map(|i| i.kind.clone()).collect();
        let links = email::Links {
            public_url: self.config.api.public_url.as_deref(),
            runbook: self
                .config
                .protocols
                .iter()
                .find(|p| p.name == incident.protocol)
                .and_then(|p| p.runbook_url.as_deref()),
        };
        let rendered = email::render(
            &incident,
            &kinds,
            self.explorer(&incident),
            links,
            (now_ms() / 1000) as u64,
        );
        let message_id = self.message_id(&group[0].message_id);
        let root = self.message_id(&format!("{}.0", incident.key));
        let thread = (message_id != root).then_some(root);
        let attempts = group.iter().map(|i| i.attempts).max().unwrap_or(0);
        self.deliver(
            &group[0].protocol,
            &ids,
            message_id,
            thread,
            rendered,
            attempts,
            Some(&incident),
            incident.severity,
        )
        .await
    }

    async fn deliver_digest(
        &self,
        protocol: &str,
        groups: Vec<Vec<OutboxItem>>,
    ) -> Result<(), NotifyError> {
        let mut incidents = Vec::new();
        let mut ids = Vec::new();
        for group in &groups {
            ids.extend(group.iter().map(|i| i.id));
            if let Some(i) = self.store.incident(group[0].incident_id).await? {
                let kind = group.last().map(|g| g.kind.clone()).unwrap_or_default();
                incidents.push((i, kind));
            }
        }
        let refs: Vec<(&IncidentRecord, String)> =
            incidents.iter().map(|(i, k)| (i, k.clone())).collect();
        let rendered = email::render_digest(protocol, &refs);
        let message_id = self.message_id(&format!("digest.{}", groups[0][0].message_id));
        let attempts = groups
            .iter()
            .flatten()
            .map(|i| i.attempts)
            .max()
            .unwrap_or(0);
        // Everyone any of its incidents reaches.
        let worst = incidents
            .iter()
            .map(|(i, _)| i.severity)
            .max()
            .unwrap_or(ProtocolState::Degraded);
        self.deliver(
            protocol, &ids, message_id, None, rendered, attempts, None, worst,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        protocol: &str,
        ids: &[i64],
        message_id: String,
        thread: Option<String>,
        rendered: email::Rendered,
        attempts: i64,
        incident: Option<&IncidentRecord>,
        severity: ProtocolState,
    ) -> Result<(), NotifyError> {
        let recipients = self.recipients(protocol, severity);
        if recipients.is_empty() {
            if self.recipients(protocol, ProtocolState::Halted).is_empty() {
                self.store
                    .outbox_failed(ids, "the protocol has no responders in the config")
                    .await?;
            } else {
                // Only severity_responders, and the incident is not that bad.
                let why = format!("nobody is mailed about {} incidents", severity.as_str());
                self.store.outbox_cancelled(ids, &why).await?;
            }
            return Ok(());
        }
        let head = self.store.ledger_head().await?;
        let message = match build(
            &self.email.from,
            &recipients,
            &message_id,
            thread,
            head,
            rendered,
        ) {
            Ok(m) => m,
            Err(e) => {
                self.store.outbox_failed(ids, &e.to_string()).await?;
                tracing::error!(protocol, error = %e, "mail cannot be built; marked failed");
                return Ok(());
            }
        };
        let domains: Vec<&str> = recipients.iter().map(|r| domain_of(r)).collect();
        let incident_id = incident.map(|i| i.id);
        match self.transport.send(message).await {
            Ok(response) => {
                self.record("mark mail sent", || {
                    self.store.outbox_sent(ids, &message_id)
                })
                .await?;
                telemetry::email_sent(protocol);
                tracing::info!(protocol, incident = ?incident_id, recipients = recipients.len(),
                    domains = ?domains, code = %response.code(), "mail sent");
            }
            Err(e) if e.is_permanent() => {
                let reply = smtp_reply(&e);
                self.record("mark mail failed", || self.store.outbox_failed(ids, &reply))
                    .await?;
                telemetry::email_failed(protocol);
                tracing::error!(protocol, incident = ?incident_id, domains = ?domains, reply = %reply,
                    "mail rejected permanently; marked failed, not retried");
            }
            Err(e) => {
                let reply = smtp_reply(&e);
                let delay = retry_delay(self.email.retry_initial, attempts);
                let retry_at = now_ms() + delay.as_millis() as i64;
                self.record("schedule mail retry", || {
                    self.store.outbox_retry(ids, retry_at, &reply)
                })
                .await?;
                telemetry::email_retried(protocol);
                tracing::warn!(protocol, incident = ?incident_id, attempt = attempts + 1,
                    retry_in_ms = delay.as_millis() as u64, reply = %reply, "mail delivery failed; will retry");
            }
        }
        Ok(())
    }
}

/// The error with its sources, e.g. `permanent error (550): mailbox unavailable`.
fn smtp_reply(e: &SendError) -> String {
    crate::error_text::with_sources(e)
}

/// `initial × 2^attempts`, capped, with ±20% jitter so retries do not march in step.
pub fn retry_delay(initial: Duration, attempts: i64) -> Duration {
    let base = initial
        .saturating_mul(1u32 << attempts.clamp(0, 16) as u32)
        .min(MAX_RETRY_DELAY);
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_with_jitter_and_a_cap() {
        let initial = Duration::from_secs(1);
        for attempts in 0..4 {
            let d = retry_delay(initial, attempts);
            let base = Duration::from_secs(1 << attempts);
            assert!(
                d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
                "{attempts}: {d:?}"
            );
        }
        assert!(retry_delay(initial, 40) <= MAX_RETRY_DELAY.mul_f64(1.2));
    }

    #[test]
    fn logs_name_domains_only() {
        assert_eq!(domain_of("oncall@example.org"), "example.org");
    }
}

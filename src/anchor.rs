//! On-chain anchors of the history head (`[anchor]`). At start-up, every
//! period and at shutdown, when the ledger head moved since the last
//! anchor, a transaction from the operator's key to its own address carries
//! `haltwatch:v1:<record>:<head>` as calldata. A copy of the history
//! rewritten after an anchor no longer holds that record at that number:
//! `verify --history --anchors` reads each anchor back from the chain and
//! says so. Anchoring runs on its own task: a chain or key that is not
//! available is retried next period and counted
//! (`haltwatch_anchors_total{outcome="failed"}`), and never holds up the
//! pipeline.

use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{B256, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use tokio::sync::watch;

use crate::config::{AnchorConfig, Config};
use crate::store::{AnchorRecord, Store};
use crate::telemetry;

/// How long a sent anchor's receipt is waited for while running...
const RECEIPT_WAIT: Duration = Duration::from_secs(120);
/// ...and at shutdown, where the stop has its own limit.
const RECEIPT_WAIT_AT_STOP: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("the anchoring key (environment variable {0}) is not set or not a key")]
    Key(String),
    #[error("chain {chain}: {what} failed: {detail}")]
    Chain {
        chain: String,
        what: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The calldata of an anchor.
pub fn calldata(record: i64, head: B256) -> Bytes {
    format!("haltwatch:v1:{record}:{head}").into_bytes().into()
}

fn chain_error(chain: &str, what: &'static str, detail: String) -> AnchorError {
    AnchorError::Chain {
        chain: chain.to_string(),
        what,
        detail: crate::redact_urls_in(&detail),
    }
}

/// Anchors the head at start-up and every period (when it moved), until
/// `stop`. The last anchor at shutdown is [`at_stop`]'s, once the
/// pipeline has landed what it held.
pub async fn run(
    config: std::sync::Arc<Config>,
    store: Store,
    status: crate::status::Status,
    mut stop: watch::Receiver<bool>,
) {
    let Some(anchor) = &config.anchor else {
        return;
    };
    let chain = config.chains[anchor.chain].name.clone();
    let mut tick = tokio::time::interval(anchor.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopped = tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            _ = tick.tick() => false,
        };
        if stopped {
            return;
        }
        // Replicas share the history: the one following the anchor's chain
        // anchors it, the others would only send the same head again.
        if status
            .replica()
            .is_some_and(|r| !r.follows.contains(&chain))
        {
            continue;
        }
        // An anchor waiting for its receipt does not hold up a stop.
        let stopped = tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            _ = once(&config, anchor, &store, RECEIPT_WAIT) => false,
        };
        if stopped {
            return;
        }
    }
}

/// The last anchor, of the head the stopped pipeline left; a replica
/// leaves it to the replicas still running.
pub async fn at_stop(config: &Config, store: &Store, status: &crate::status::Status) {
    if status.replica().is_some() {
        return;
    }
    if let Some(anchor) = &config.anchor {
        once(config, anchor, store, RECEIPT_WAIT_AT_STOP).await;
    }
}

/// One anchor of the current head, if it moved since the last; the outcome
/// is logged and counted, never returned.
async fn once(config: &Config, anchor: &AnchorConfig, store: &Store, wait: Duration) {
    match anchor_head(config, anchor, store, wait).await {
        Ok(Some(a)) => {
            telemetry::anchor("sent");
            tracing::info!(record = a.record, head = %a.head, tx = %a.tx_hash,
                block = ?a.block_number, "history head anchored");
        }
        Ok(None) => {}
        Err(e) => {
            telemetry::anchor("failed");
            tracing::warn!(error = %e, "anchoring the history head failed; trying again next period");
        }
    }
}

/// Sends one anchor of the current head, unless it is the last one's.
async fn anchor_head(
    config: &Config,
    anchor: &AnchorConfig,
    store: &Store,
    wait: Duration,
) -> Result<Option<AnchorRecord>, AnchorError> {
    let head = store.ledger_head().await?;
    let last = store.last_anchor().await?;
    if head.0 == 0 || Some(head) == last {
        return Ok(None);
    }
    let chain = &config.chains[anchor.chain];
    let signer = anchor
        .signer()
        .ok_or_else(|| AnchorError::Key(anchor.key_env.clone()))?;
    let me = signer.address();
    let url = chain
        .rpc
        .first()
        .map(|r| r.url.as_str())
        .unwrap_or_default();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect(url)
        .await
        .map_err(|e| chain_error(&chain.name, "connect", e.to_string()))?
        .erased();
    let tx = TransactionRequest::default()
        .with_to(me)
        .with_input(calldata(head.0, head.1));
    let pending = provider
        .send_transaction(tx)
        .await
        .map_err(|e| chain_error(&chain.name, "send the anchor", e.to_string()))?;
    let mut record = AnchorRecord {
        record: head.0,
        head: head.1,
        chain: chain.name.clone(),
        chain_id: chain.chain_id,
        tx_hash: *pending.tx_hash(),
        block_number: None,
    };
    // Recorded as sent at once: a receipt not seen in time is read back by verify.
    store.record_anchor(&record).await?;
    if let Ok(Ok(receipt)) = tokio::time::timeout(wait, pending.get_receipt()).await {
        record.block_number = receipt.block_number;
        store.record_anchor(&record).await?;
    }
    Ok(Some(record))
}

/// What reading one anchor back found.
#[derive(Debug, Clone)]
pub struct AnchorCheck {
    pub anchor: AnchorRecord,
    /// `None` when it holds; otherwise what is wrong.
    pub problem: Option<String>,
}

/// Reads every recorded anchor back from its chain and checks it against
/// the ledger; also counts anchor transactions the key sent that the store
/// does not list (the key must be used for anchoring only).
pub async fn verify(
    config: &Config,
    store: &Store,
) -> Result<(Vec<AnchorCheck>, Option<String>), AnchorError> {
    let anchors = store.anchors().await?;
    let mut checks = Vec::with_capacity(anchors.len());
    let mut sender = None;
    for a in anchors {
        let Some(chain) = config.chains.iter().find(|c| c.chain_id == a.chain_id) else {
            checks.push(AnchorCheck {
                problem: Some(format!("no chain with id {} in the config", a.chain_id)),
                anchor: a,
            });
            continue;
        };
        let url = chain
            .rpc
            .first()
            .map(|r| r.url.as_str())
            .unwrap_or_default();
        let provider: DynProvider = ProviderBuilder::new()
            .connect(url)
            .await
            .map_err(|e| chain_error(&chain.name, "connect", e.to_string()))?
            .erased();
        let problem = match check_one(&provider, store, &a).await {
            Ok((from, problem)) => {
                sender.get_or_insert((provider.clone(), from));
                problem
            }
            Err(e) => Some(e.to_string()),
        };
        checks.push(AnchorCheck { anchor: a, problem });
    }
    // Anchors on chain that the store no longer lists.
    let mut missing = None;
    if let Some((provider, from)) = sender {
        let sent = provider
            .get_transaction_count(from)
            .await
            .map_err(|e| chain_error("anchor", "read the key's nonce", e.to_string()))?;
        if sent > checks.len() as u64 {
            missing = Some(format!(
                "the anchoring key {from} sent {sent} transactions, the store lists {} anchors: anchors were deleted (or the key is used for more than anchoring)",
                checks.len()
            ));
        }
    }
    Ok((checks, missing))
}

/// The anchor's sender, and what is wrong with it (`None`: it holds).
async fn check_one(
    provider: &DynProvider,
    store: &Store,
    a: &AnchorRecord,
) -> Result<(alloy::primitives::Address, Option<String>), AnchorError> {
    use alloy::consensus::Transaction as _;
    let chain = a.chain.as_str();
    let tx = provider
        .get_transaction_by_hash(a.tx_hash)
        .await
        .map_err(|e| chain_error(chain, "read the anchor", e.to_string()))?;
    let Some(tx) = tx else {
        return Ok((
            alloy::primitives::Address::ZERO,
            Some(format!("transaction {} is not on the chain", a.tx_hash)),
        ));
    };
    let from = tx.inner.signer();
    if tx.input() != &calldata(a.record, a.head) || tx.to() != Some(from) {
        return Ok((
            from,
            Some(format!(
                "transaction {} does not carry this anchor (the stored anchor was edited)",
                a.tx_hash
            )),
        ));
    }
    let mined = provider
        .get_transaction_receipt(a.tx_hash)
        .await
        .map_err(|e| chain_error(chain, "read the anchor's receipt", e.to_string()))?;
    if !mined.is_some_and(|r| r.status()) {
        return Ok((from, Some("its transaction is not mined (yet)".into())));
    }
    if store.ledger_record(Some(a.record), a.head).await?.is_none() {
        return Ok((
            from,
            Some(format!(
                "the history no longer holds record {} with head {}: rewritten after this anchor",
                a.record, a.head
            )),
        ));
    }
    Ok((from, None))
}

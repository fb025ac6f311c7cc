//! `haltwatch verify`: re-reads every piece of evidence from the chain and
//! confirms it is still canonical and identical to what was recorded.

use std::collections::HashMap;

use alloy::eips::BlockNumberOrTag;
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use serde::Serialize;

use crate::config::ChainConfig;
use crate::model::{EvidenceKind, log_hash};
use crate::store::{EvidenceRecord, IncidentRecord};

/// What the chain says about one piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum EvidenceCheck {
    /// The block is canonical, the log is at its index with the same content, the receipt agrees.
    Verified,
    /// Evidence a reorg already retracted: not expected on chain.
    Retracted,
    /// The block (or the log in it) is no longer on the canonical chain.
    Missing(String),
    /// The chain has something else there.
    Mismatch(String),
    /// The chain could not be asked.
    Unreachable(String),
}

/// The verdict on one incident: the worst of its evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Verified,
    EvidenceMissing,
    Mismatch,
    Unreachable,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentCheck {
    pub id: i64,
    pub protocol: String,
    pub verdict: Verdict,
    pub evidence: Vec<(u64, u64, EvidenceCheck)>,
}

impl IncidentCheck {
    pub fn ok(&self) -> bool {
        self.verdict == Verdict::Verified
    }
}

/// Verifies incidents against the chains of `chains`, one connection per chain id.
pub async fn verify(chains: &[ChainConfig], incidents: &[IncidentRecord]) -> Vec<IncidentCheck> {
    let mut providers: HashMap<u64, Result<DynProvider, String>> = HashMap::new();
    let mut out = Vec::new();
    for incident in incidents {
        let provider = match providers.get(&incident.chain_id) {
            Some(p) => p.clone(),
            None => {
                let p = connect(chains, incident.chain_id).await;
                providers.insert(incident.chain_id, p.clone());
                p
            }
        };
        let mut checks = Vec::new();
        for e in &incident.evidence {
            let check = match (&provider, e.retracted) {
                (_, true) => EvidenceCheck::Retracted,
                (Err(why), _) => EvidenceCheck::Unreachable(why.clone()),
                (Ok(p), false) => check(p, e).await,
            };
            checks.push((e.block_number, e.log_index, check));
        }
        let verdict = checks
            .iter()
            .fold(Verdict::Verified, |v, (_, _, c)| match c {
                EvidenceCheck::Unreachable(_) => Verdict::Unreachable,
                EvidenceCheck::Mismatch(_) if v != Verdict::Unreachable => Verdict::Mismatch,
                EvidenceCheck::Missing(_) if v == Verdict::Verified => Verdict::EvidenceMissing,
                _ => v,
            });
        out.push(IncidentCheck {
            id: incident.id,
            protocol: incident.protocol.clone(),
            verdict,
            evidence: checks,
        });
    }
    out
}

async fn connect(chains: &[ChainConfig], chain_id: u64) -> Result<DynProvider, String> {
    let chain = chains
        .iter()
        .find(|c| c.chain_id == chain_id)
        .ok_or_else(|| format!("no chain with id {chain_id} in the config"))?;
    crate::source::connect(chain)
        .await
        .map_err(|e| e.to_string())
}

async fn check(p: &DynProvider, e: &EvidenceRecord) -> EvidenceCheck {
    let unreachable = |what: &str, err: &dyn std::fmt::Display| {
        EvidenceCheck::Unreachable(format!(
            "{what}: {}",
            crate::redact_urls_in(&err.to_string())
        ))
    };
    let block = match p
        .get_block_by_number(BlockNumberOrTag::Number(e.block_number))
        .await
    {
        Ok(b) => b,
        Err(err) => return unreachable("eth_getBlockByNumber", &err),
    };
    match block {
        None => return EvidenceCheck::Missing(format!("block {} does not exist", e.block_number)),
        Some(b) if b.header.hash != e.block_hash => {
            return EvidenceCheck::Missing(format!(
                "block {} is now {}, not {}",
                e.block_number, b.header.hash, e.block_hash
            ));
        }
        Some(_) => {}
    }
    match e.kind {
        EvidenceKind::Log => {}
        EvidenceKind::FailedCall => return check_failed_call(p, e).await,
        EvidenceKind::Probe => return check_probe(p, e).await,
        // A stall or a spike decision is dated by a canonical block; there is nothing more to re-read.
        EvidenceKind::Stall | EvidenceKind::Spike => return EvidenceCheck::Verified,
    }
    let filter = Filter::new()
        .at_block_hash(e.block_hash)
        .address(e.contract);
    let logs = match p.get_logs(&filter).await {
        Ok(l) => l,
        Err(err) => return unreachable("eth_getLogs", &err),
    };
    let Some(log) = logs.iter().find(|l| l.log_index == Some(e.log_index)) else {
        return EvidenceCheck::Missing(format!(
            "no log of {} at index {} in block {}",
            e.contract, e.log_index, e.block_number
        ));
    };
    if log.transaction_hash != Some(e.tx_hash) {
        return EvidenceCheck::Mismatch(format!(
            "log {} belongs to tx {:?}, recorded {}",
            e.log_index, log.transaction_hash, e.tx_hash
        ));
    }
    if log_hash(&log.inner) != e.log_hash {
        return EvidenceCheck::Mismatch(format!(
            "log {} content differs from what was recorded",
            e.log_index
        ));
    }
    match p.get_transaction_receipt(e.tx_hash).await {
        Ok(Some(r)) if r.block_hash == Some(e.block_hash) => EvidenceCheck::Verified,
        Ok(Some(r)) => EvidenceCheck::Mismatch(format!(
            "receipt of {} is in block {:?}",
            e.tx_hash, r.block_hash
        )),
        Ok(None) => EvidenceCheck::Missing(format!("no receipt for {}", e.tx_hash)),
        Err(err) => unreachable("eth_getTransactionReceipt", &err),
    }
}

/// A failed call: its receipt is in the recorded block, with status 0.
async fn check_failed_call(p: &DynProvider, e: &EvidenceRecord) -> EvidenceCheck {
    match p.get_transaction_receipt(e.tx_hash).await {
        Ok(Some(r)) if r.block_hash != Some(e.block_hash) => EvidenceCheck::Missing(format!(
            "receipt of {} is in block {:?}, not {}",
            e.tx_hash, r.block_hash, e.block_hash
        )),
        Ok(Some(r)) if r.status() => {
            EvidenceCheck::Mismatch(format!("{} succeeded on chain", e.tx_hash))
        }
        Ok(Some(_)) => EvidenceCheck::Verified,
        Ok(None) => EvidenceCheck::Missing(format!("no receipt for {}", e.tx_hash)),
        Err(err) => EvidenceCheck::Unreachable(format!(
            "eth_getTransactionReceipt: {}",
            crate::redact_urls_in(&err.to_string())
        )),
    }
}

/// A probe: the same view call at the same block answers the same.
async fn check_probe(p: &DynProvider, e: &EvidenceRecord) -> EvidenceCheck {
    use alloy::network::TransactionBuilder;
    let Some(signature) = e
        .event
        .strip_prefix("probe ")
        .and_then(|t| t.split(' ').next())
    else {
        return EvidenceCheck::Mismatch("probe evidence without a function".into());
    };
    let selector = alloy::primitives::keccak256(signature.as_bytes());
    let request = alloy::rpc::types::TransactionRequest::default()
        .with_to(e.contract)
        .with_input(selector[..4].to_vec());
    match p
        .call(request)
        .block(alloy::eips::BlockId::hash(e.block_hash))
        .await
    {
        Ok(out) if alloy::primitives::keccak256(&out) == e.log_hash => EvidenceCheck::Verified,
        Ok(_) => EvidenceCheck::Mismatch(format!(
            "{signature} answers differently at block {}",
            e.block_number
        )),
        Err(err) => EvidenceCheck::Missing(format!(
            "{signature} at block {}: {}",
            e.block_hash,
            crate::redact_urls_in(&err.to_string())
        )),
    }
}

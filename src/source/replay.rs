//! The revert data of a failed transaction: replayed with `eth_call` on its
//! parent block's state, for calls whose receipt or trace does not carry it.

use alloy::eips::BlockId;
use alloy::primitives::Bytes;
use alloy::providers::{DynProvider, Provider};

use super::SourceError;
use super::blocks::TxCall;
use super::endpoints::Endpoint;
use super::endpoints::rpc_error;
use crate::telemetry;

/// The revert data of a failed transaction, replayed with `eth_call` on
/// the parent block's state. `None` when it succeeds there (it failed for a
/// reason of its own block) or reverts without data; an error when the
/// node could not answer, so the block is read again rather than its
/// failure going unexplained.
pub(super) async fn replay(
    p: &DynProvider,
    ep: &Endpoint,
    t: &TxCall,
    parent: u64,
) -> Result<Option<Bytes>, SourceError> {
    use alloy::network::TransactionBuilder;
    let Some(to) = t.to else { return Ok(None) };
    let request = alloy::rpc::types::TransactionRequest::default()
        .with_from(t.from)
        .with_to(to)
        .with_input(t.input.clone())
        .with_value(t.value)
        .with_gas_limit(t.gas);
    telemetry::rpc_request(&ep.redacted, "eth_call");
    match p.call(request).block(BlockId::number(parent)).await {
        Ok(_) => Ok(None),
        Err(e) => match e.as_error_resp() {
            Some(r) if r.as_revert_data().is_some() => Ok(r.as_revert_data()),
            Some(r) if r.message.to_ascii_lowercase().contains("revert") => Ok(None),
            _ => Err(rpc_error(ep, "eth_call", &e)),
        },
    }
}

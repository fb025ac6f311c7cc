//! Following one chain: its source and its processor, started from the
//! checkpoint, until the stop signal. Used for every chain by a process
//! that has the history to itself, and for each chain a replica holds the
//! lease of ([`super::replica`]).

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::processor::{self, Processor};
use super::{CHANNEL_DEPTH, PipelineError, WINDOW_BLOCKS};
use crate::config::Config;
use crate::model::ProbeKind;
use crate::source::{ChainSource, ProbeCall, Watch};
use crate::status::Status;
use crate::store::Store;

/// What every followed chain shares: the config, the store, the status
/// and the sender's wake-up.
#[derive(Clone)]
pub(super) struct Follow {
    pub config: Arc<Config>,
    pub store: Store,
    pub status: Status,
    pub wake: mpsc::Sender<()>,
}

impl Follow {
    /// Starts following chain `c` from its checkpoint until `stop` turns
    /// true; its source and processor run in `tasks`.
    pub async fn start(
        &self,
        c: usize,
        stop: watch::Receiver<bool>,
        tasks: &mut JoinSet<Result<(), PipelineError>>,
    ) -> Result<(), PipelineError> {
        let config = &self.config;
        let chain = &config.chains[c];
        let mode = processor::Mode::Live {
            wake: self.wake.clone(),
            status: self.status.clone(),
        };
        let processor = Processor::new(config.clone(), c, self.store.clone(), mode).await?;
        let window =
            self.store
                .window(chain.chain_id)
                .await
                .map_err(|source| PipelineError::Store {
                    chain: chain.name.clone(),
                    source,
                })?;
        match window.last() {
            Some(cp) => {
                tracing::info!(chain = %chain.name, checkpoint = cp.number, "resuming from checkpoint")
            }
            None => {
                tracing::info!(chain = %chain.name, start = ?chain.start_block, "first run on this chain")
            }
        }
        let watch = watch_plan(config, c, &processor);
        let (addresses, topics) = (
            processor.registry().addresses(),
            processor.registry().topics(),
        );
        let source = ChainSource::new(chain, addresses, topics, window, WINDOW_BLOCKS)
            .with_status(self.status.clone())
            .with_watch(watch)
            // Half the stop's limit: the write and the outbox's pass get the rest.
            .with_shutdown_grace(config.shutdown_timeout / 2);
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let name = chain.name.clone();
        tasks.spawn(async move {
            source
                .run(tx, stop)
                .await
                .map_err(|source| PipelineError::Source {
                    chain: name,
                    source,
                })
        });
        tasks.spawn(processor.run(rx));
        Ok(())
    }
}

/// What the source of chain `c` reads besides logs: calls into every
/// contract of its protocols (when failed-tx detection is on), probes, and
/// the complete sets that rules read from the chain.
pub(super) fn watch_plan(config: &Config, c: usize, processor: &Processor) -> Watch {
    let chain = &config.chains[c];
    let mut probes = Vec::new();
    let mut halt_reverts = Vec::new();
    for (pi, p) in config
        .protocols
        .iter()
        .enumerate()
        .filter(|(_, p)| p.chain == c)
    {
        for (i, probe) in p.probes.iter().enumerate() {
            probes.push(ProbeCall {
                kind: ProbeKind::State,
                id: (pi, i),
                refresh_on: Vec::new(),
                address: p.contracts[probe.contract].address,
                calldata: probe.function.selector().to_vec().into(),
                every_blocks: probe.every_blocks,
            });
        }
        for (r, rule) in p.rules.iter().enumerate() {
            let Some(from) = &rule.scopes_from else {
                continue;
            };
            let at = p.contracts[rule.contract].address;
            probes.push(ProbeCall {
                kind: ProbeKind::ScopeSet,
                id: (pi, r),
                refresh_on: from.refresh_on.iter().map(|t| (at, *t)).collect(),
                address: p.contracts[from.contract].address,
                calldata: from.function.selector().to_vec().into(),
                every_blocks: from.refresh_blocks,
            });
        }
        for contract in &p.contracts {
            for h in &contract.halt_reverts {
                halt_reverts.push((contract.address, h.revert_data(&contract.abi)));
            }
        }
    }
    Watch {
        contracts: if chain.failed_tx {
            processor.registry().contracts()
        } else {
            Vec::new()
        },
        trace: chain.trace_calls,
        probes,
        halt_reverts,
    }
}

//! Writing classified ranges: each on its own task while the next range is
//! classified, in order; a range lands (logs, metrics, status, the sender)
//! once it is stored.

use std::sync::Arc;

use super::Processor;
use super::classify::Classified;
use crate::config::Config;
use crate::model::{BlockRef, CommittedRange, IncidentUpdate, TransitionKind};
use crate::pipeline::{PipelineError, WINDOW_BLOCKS};
use crate::status::ProtocolStatus;
use crate::store::{Batch, Rows, Store, StoredUpdate};
use crate::telemetry;

impl Processor {
    /// Classifies a committed range and builds its rows (while the range
    /// before it may still be being written).
    pub(super) fn prepare(&mut self, range: CommittedRange) -> Prepared {
        let started = std::time::Instant::now();
        let CommittedRange {
            from,
            tip,
            blocks,
            logs,
            calls,
            probes,
        } = range;
        let classified = self.classify(from, tip.number, &logs, &calls, &probes, &blocks);
        let read = [logs.len(), calls.len(), probes.len()];
        // The earliest block time read: a range caught up from far behind
        // has headers for its last blocks only.
        let first_time = blocks.first().map_or(tip.timestamp, |b| b.timestamp);
        Prepared::new(from, tip.number, blocks, read, classified, started)
            .observing(first_time, tip.timestamp)
    }

    /// Starts writing a prepared range on its own task.
    pub(super) fn write(&self, prepared: Prepared) -> Writing {
        let Prepared {
            from,
            to,
            blocks,
            read,
            observed,
            classified:
                Classified {
                    updates,
                    snapshots,
                    decoded,
                },
            rows,
            classified_in,
        } = prepared;
        let statuses = self.statuses_after(&updates);
        let writer = self.writer();
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let result = writer
                .commit_until_stored(&updates, rows, snapshots, &blocks, observed)
                .await;
            (result, updates, blocks, started.elapsed())
        });
        Writing {
            task,
            range: Written {
                from,
                to,
                read,
                decoded,
                statuses,
                classified_in,
            },
        }
    }

    /// Writes a prepared range and waits for it to land.
    pub(super) async fn store(&self, prepared: Prepared) -> Result<(), PipelineError> {
        self.land(&mut Some(self.write(prepared))).await
    }

    fn writer(&self) -> Writer {
        Writer {
            store: self.store.clone(),
            config: self.config.clone(),
            chain: self.chain,
            live: !self.backfill,
            status: self.status.clone(),
        }
    }

    /// Waits for the range being written, if any, and lands it.
    pub(super) async fn land(&self, writing: &mut Option<Writing>) -> Result<(), PipelineError> {
        match writing.take() {
            Some(w) => {
                let done = w.task.await;
                self.landed(w.range, done)
            }
            None => Ok(()),
        }
    }

    /// What follows a range's write: logs, metrics, for a live range the
    /// status (the protocols' states at the range's end, from
    /// [`Self::statuses_after`]), and the sender.
    pub(super) fn landed(&self, range: Written, done: WriteDone) -> Result<(), PipelineError> {
        let (result, updates, blocks, store_in) = done.map_err(PipelineError::Panic)?;
        result.map_err(self.store_error())?;
        let Written {
            from,
            to,
            read: [logs, calls, probes],
            decoded,
            statuses,
            classified_in,
        } = range;
        let chain = &self.config.chains[self.chain];
        log_updates(&self.config, chain, from, to, &updates);
        if !blocks.is_empty() {
            telemetry::blocks_processed(&chain.name, to + 1 - from);
        }
        telemetry::logs_decoded(&chain.name, decoded);
        if !self.backfill {
            if let Some(tip) = blocks.iter().max_by_key(|b| b.number) {
                self.status
                    .processed(&chain.name, tip.number, tip.timestamp);
            }
            for s in statuses {
                self.status.set_protocol(s);
            }
        }
        if updates.iter().any(|u| u.transition.is_some()) {
            self.wake_sender();
        }
        tracing::debug!(chain = %chain.name, from, to, logs, calls, probes,
            updates = updates.len(), classify_us = classified_in.as_micros() as u64,
            store_us = store_in.as_micros() as u64, "range applied");
        Ok(())
    }
}

/// A committed range classified, with its rows built.
pub(super) struct Prepared {
    from: u64,
    to: u64,
    /// The new window and checkpoint (none in a backfill or a chain stall).
    blocks: Vec<BlockRef>,
    /// Logs, calls and probes read for the range.
    read: [usize; 3],
    /// (from block, to block, first time, last time) observed, if known.
    observed: Option<[u64; 4]>,
    classified: Classified,
    rows: Vec<Rows>,
    /// Classifying and building the rows, since `started`.
    classified_in: std::time::Duration,
}

impl Prepared {
    /// The range was observed from `first_time` to `last_time` (chain time).
    pub(super) fn observing(mut self, first_time: u64, last_time: u64) -> Self {
        self.observed = Some([self.from, self.to, first_time, last_time]);
        self
    }

    pub(super) fn new(
        from: u64,
        to: u64,
        blocks: Vec<BlockRef>,
        read: [usize; 3],
        classified: Classified,
        started: std::time::Instant,
    ) -> Self {
        let rows = classified.updates.iter().map(Rows::of).collect();
        Prepared {
            from,
            to,
            blocks,
            read,
            observed: None,
            classified,
            rows,
            classified_in: started.elapsed(),
        }
    }
}

/// A range being written on its own task.
pub(super) struct Writing {
    pub task: tokio::task::JoinHandle<WriteResult>,
    pub range: Written,
}

/// The write's outcome, and what it borrowed back.
pub(super) type WriteResult = (
    Result<(), crate::store::StoreError>,
    Vec<IncidentUpdate>,
    Vec<BlockRef>,
    std::time::Duration,
);
pub(super) type WriteDone = Result<WriteResult, tokio::task::JoinError>;

/// What landing a written range needs to know of it.
pub(super) struct Written {
    from: u64,
    to: u64,
    /// Logs, calls and probes read for the range.
    read: [usize; 3],
    decoded: u64,
    /// The protocols' states at the end of the range, to publish once it
    /// is stored ([`Processor::statuses_after`]).
    statuses: Vec<ProtocolStatus>,
    classified_in: std::time::Duration,
}

/// What writing a range needs of the processor, to run on its own task.
struct Writer {
    store: Store,
    config: Arc<Config>,
    chain: usize,
    /// A live range (not a backfill): mails, trackers, window and checkpoint.
    live: bool,
    /// Where a store that cannot be written is reported while retrying.
    status: crate::status::Status,
}

impl Writer {
    /// [`Self::commit`] until it lands: a busy, locked or full store is
    /// retried (the range is one transaction, so a failed attempt left
    /// nothing behind). Retries rebuild the rows from the updates, so the
    /// first attempt copies nothing.
    async fn commit_until_stored(
        &self,
        updates: &[IncidentUpdate],
        rows: Vec<Rows>,
        snapshots: Vec<(usize, u64, String)>,
        blocks: &[BlockRef],
        observed: Option<[u64; 4]>,
    ) -> Result<(), crate::store::StoreError> {
        let who = super::writer_name(&self.config.chains[self.chain].name);
        let mut first = Some(rows);
        crate::store::retry::until_stored(
            "commit",
            |reason| self.status.store_problem(&who, reason),
            || {
                let rows = first
                    .take()
                    .unwrap_or_else(|| updates.iter().map(Rows::of).collect());
                self.commit(updates, rows, snapshots.clone(), blocks, observed)
            },
        )
        .await
    }

    /// Writes one classified range: the history, the trackers that changed
    /// and, for a live range, the window and the checkpoint.
    async fn commit(
        &self,
        updates: &[IncidentUpdate],
        rows: Vec<Rows>,
        snapshots: Vec<(usize, u64, String)>,
        blocks: &[BlockRef],
        observed: Option<[u64; 4]>,
    ) -> Result<(), crate::store::StoreError> {
        let Writer {
            store,
            config,
            chain,
            live,
            ..
        } = self;
        let live = *live;
        let chain = &config.chains[*chain];
        let stored: Vec<StoredUpdate> = updates
            .iter()
            .zip(rows)
            .map(|(u, rows)| {
                let protocol = &config.protocols[u.protocol];
                let opened_at = u.transition.as_ref().map(|t| t.at);
                StoredUpdate {
                    protocol: &protocol.name,
                    chain: &chain.name,
                    update: u,
                    // History rebuilt by a backfill pages nobody.
                    notify: live && config.email.is_some() && protocol.pages(),
                    planned: opened_at.is_some_and(|at| config.in_maintenance(u.protocol, at)),
                    rows,
                }
            })
            .collect();
        let trackers = if live {
            snapshots
                .into_iter()
                .map(|(p, block, json)| (config.protocols[p].name.as_str(), block, json))
                .collect()
        } else {
            Vec::new()
        };
        store
            .commit(Batch {
                chain_id: chain.chain_id,
                blocks: if live { blocks } else { &[] },
                updates: stored,
                trackers,
                window_blocks: WINDOW_BLOCKS,
                observed: observed.map(|[from_block, to_block, first_time, last_time]| {
                    crate::store::Observed {
                        chain: &chain.name,
                        from_block,
                        to_block,
                        first_time,
                        last_time,
                    }
                }),
            })
            .await
    }
}

/// Updates of one committed range up to which each is logged at INFO;
/// above it (a catch-up or a backfill over a busy history), each goes to
/// DEBUG and INFO gets one summary of the range: the history holds every
/// row, and a restart after an outage does not bury the log.
const LOG_EACH_UP_TO: usize = 16;

fn log_updates(
    config: &Config,
    chain: &crate::config::ChainConfig,
    from: u64,
    to: u64,
    updates: &[IncidentUpdate],
) {
    let each = updates.len() <= LOG_EACH_UP_TO;
    // INFO for each update of a small range, DEBUG in a large one.
    macro_rules! log {
        ($($field:tt)*) => {
            if each { tracing::info!($($field)*) } else { tracing::debug!($($field)*) }
        };
    }
    let mut counts = [0usize; 5]; // opened, escalated, de-escalated, resolved, evidence only
    for u in updates {
        let protocol = &config.protocols[u.protocol].name;
        let Some(t) = &u.transition else {
            counts[4] += 1;
            log!(protocol = %protocol, chain = %chain.name, incident = %u.key,
                evidence = u.evidence.len(), "evidence added to open incident");
            continue;
        };
        telemetry::transition(protocol, t.kind.as_str());
        counts[match t.kind {
            TransitionKind::Opened => 0,
            TransitionKind::Escalated => 1,
            TransitionKind::Deescalated => 2,
            TransitionKind::Resolved => 3,
        }] += 1;
        log!(protocol = %protocol, chain = %chain.name, incident = %u.key,
            transition = t.kind.as_str(), from = %t.from, to = %t.to, block = t.block_number,
            "incident transition");
    }
    if !each {
        let [opened, escalated, deescalated, resolved, evidence_only] = counts;
        tracing::info!(chain = %chain.name, from, to, opened, escalated, deescalated, resolved,
            evidence_only, "incident transitions recorded (each one is logged at debug level)");
    }
}

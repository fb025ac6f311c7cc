//! The per-chain processor: decode → detect → classify → store.
//!
//! Within a committed range, logs and call outcomes are taken in chain order
//! and applied one transaction at a time; at the end of each block the
//! revert-spike windows are closed; at the tip the probe answers are
//! applied. Tracker snapshots are written per block in which they changed, so
//! a reorg restores the classifier exactly.
//!
//! Following a chain, a range is written on its own task while the next
//! one is classified; writes stay in order, and a range counts as
//! processed (status, logs, the sender) once its write has landed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use alloy::primitives::{Address, B256};
use alloy::rpc::types::Log;
use tokio::sync::mpsc;

use super::{PipelineError, WINDOW_BLOCKS};
use crate::classify::{ProtocolModel, Tracker};
use crate::config::Config;
use crate::decode::AbiRegistry;
use crate::detect;
use crate::detect::revert_spike::{SpikeChange, SpikeWindow};
use crate::model::{
    BlockRef, CallOutcome, ChainUpdate, CommittedRange, Evidence, EvidenceKind, IncidentUpdate,
    ProbeResult, Scope, ScopeChange, TransitionKind,
};
use crate::status::{ProtocolStatus, Status};
use crate::store::{Batch, Rows, Store, StoredUpdate};
use crate::telemetry;

/// What decode → detect → classify made of one committed range.
#[derive(Default)]
struct Classified {
    updates: Vec<IncidentUpdate>,
    /// (protocol, block, tracker JSON) for each block where a tracker changed.
    snapshots: Vec<(usize, u64, String)>,
    /// Monitored logs that decoded.
    decoded: u64,
}

/// Evidence waiting to be applied as one transaction, and the trackers it changed.
#[derive(Default)]
struct Batching {
    pending: BTreeMap<usize, Vec<Evidence>>,
    changed: Vec<usize>,
    out: Classified,
    /// The newest block time seen: dates blocks whose header is not at hand.
    time: u64,
    /// Snapshots are kept only where a reorg could return to them: above
    /// this block, and the newest at or below it per protocol (held here as
    /// a copy and serialized once, at the end). `None`: all of them.
    cutoff: Option<u64>,
    below: BTreeMap<usize, (u64, Tracker)>,
}

/// A log or a call, in chain order.
enum Item<'a> {
    Log(&'a Log),
    Call(&'a CallOutcome),
}

impl Item<'_> {
    /// (block, transaction index, logs before calls, log index).
    fn position(&self) -> (u64, u64, u8, u64) {
        match self {
            Item::Log(l) => (
                l.block_number.unwrap_or_default(),
                l.transaction_index.unwrap_or_default(),
                0,
                l.log_index.unwrap_or_default(),
            ),
            Item::Call(c) => (c.block_number, c.tx_index, 1, u64::from(c.nested)),
        }
    }
}

/// Decodes, detects, classifies and stores the updates of one chain.
pub struct Processor {
    config: Arc<Config>,
    chain: usize,
    pub(super) registry: AbiRegistry,
    store: Store,
    models: Vec<ProtocolModel>,
    /// Tracker per protocol index (only this chain's protocols).
    pub(super) trackers: HashMap<usize, Tracker>,
    /// (protocol, contract) pairs watching each address.
    watchers: HashMap<Address, Vec<(usize, usize)>>,
    /// Revert-spike windows per (protocol, contract).
    spikes: HashMap<(usize, usize), SpikeWindow>,
    /// Probes that have answered at least once in this run.
    probed: HashSet<(usize, usize)>,
    /// Wakes the mail sender after a transition is committed.
    pub(super) wake: Option<mpsc::Sender<()>>,
    /// Rebuilding history: trackers start operational, nothing but the
    /// history is written, nobody is mailed.
    pub(super) backfill: bool,
    pub(super) status: Status,
}

impl Processor {
    pub async fn new(
        config: Arc<Config>,
        chain: usize,
        store: Store,
    ) -> Result<Self, PipelineError> {
        let registry = AbiRegistry::for_chain(&config, chain);
        let mut models = Vec::new();
        let mut watchers: HashMap<Address, Vec<(usize, usize)>> = HashMap::new();
        let mut spikes = HashMap::new();
        for (i, p) in config
            .protocols
            .iter()
            .enumerate()
            .filter(|(_, p)| p.chain == chain)
        {
            models.push(ProtocolModel::new(i, p));
            for (c, contract) in p.contracts.iter().enumerate() {
                watchers.entry(contract.address).or_default().push((i, c));
                spikes.insert((i, c), SpikeWindow::new(contract.revert_spike));
            }
        }
        let mut processor = Processor {
            config,
            chain,
            registry,
            store,
            models,
            trackers: HashMap::new(),
            watchers,
            spikes,
            probed: HashSet::new(),
            wake: None,
            backfill: false,
            status: Status::default(),
        };
        processor.load_trackers().await?;
        Ok(processor)
    }

    fn chain_name(&self) -> &str {
        &self.config.chains[self.chain].name
    }

    fn chain_id(&self) -> u64 {
        self.config.chains[self.chain].chain_id
    }

    fn store_error(&self) -> impl FnOnce(crate::store::StoreError) -> PipelineError + use<> {
        let chain = self.chain_name().to_string();
        move |source| PipelineError::Store { chain, source }
    }

    pub(super) async fn load_trackers(&mut self) -> Result<(), PipelineError> {
        self.trackers.clear();
        for m in &self.models {
            let json = self
                .store
                .tracker(&m.name)
                .await
                .map_err(self.store_error())?;
            let tracker = match json {
                Some(j) => serde_json::from_str(&j).map_err(|source| PipelineError::Snapshot {
                    protocol: m.name.clone(),
                    source,
                })?,
                None => Tracker::default(),
            };
            self.trackers.insert(m.index, tracker);
        }
        // A spike the history shows as open must still be able to clear.
        for ((p, c), window) in &mut self.spikes {
            let name = &self.config.protocols[*p].contracts[*c].name;
            let scope = Scope::keyed(name.clone(), detect::revert_spike::SCOPE_KEY);
            if self
                .trackers
                .get(p)
                .is_some_and(|t| t.halted.contains(&scope))
            {
                window.resume_spiking();
            }
        }
        Ok(())
    }

    /// Handles the source's updates in order, see [`Self::handle`].
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<ChainUpdate>,
    ) -> Result<(), PipelineError> {
        let mut writing: Option<Writing> = None;
        loop {
            let update = match writing.as_mut() {
                None => rx.recv().await,
                Some(w) => tokio::select! {
                    biased;
                    done = &mut w.task => {
                        if let Some(w) = writing.take() {
                            self.landed(w.range, done)?;
                        }
                        continue;
                    }
                    update = rx.recv() => update,
                },
            };
            let Some(update) = update else { break };
            self.handle(update, &mut writing).await?;
        }
        self.land(&mut writing).await
    }

    /// Classifies a committed range and builds its rows (while the range
    /// before it may still be being written).
    fn prepare(&mut self, range: CommittedRange) -> Prepared {
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
        Prepared::new(from, tip.number, blocks, read, classified, started)
    }

    /// Starts writing a prepared range on its own task.
    fn write(&self, prepared: Prepared) -> Writing {
        let Prepared {
            from,
            to,
            blocks,
            read,
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
            let result = writer.commit(&updates, rows, snapshots, &blocks).await;
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
    async fn store(&self, prepared: Prepared) -> Result<(), PipelineError> {
        self.land(&mut Some(self.write(prepared))).await
    }

    fn writer(&self) -> Writer {
        Writer {
            store: self.store.clone(),
            config: self.config.clone(),
            chain: self.chain,
            live: !self.backfill,
        }
    }

    /// Waits for the range being written, if any, and lands it.
    async fn land(&self, writing: &mut Option<Writing>) -> Result<(), PipelineError> {
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
    fn landed(&self, range: Written, done: WriteDone) -> Result<(), PipelineError> {
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

    /// Applies one chain update. A committed range is classified while the
    /// range before it is still being written (`writing`), then written on
    /// its own task; ranges are written in order, and the status, the logs
    /// and the sender learn of a range once it is stored. Any other update
    /// first lands the write in flight: a revert undoes only what is stored.
    async fn handle(
        &mut self,
        update: ChainUpdate,
        writing: &mut Option<Writing>,
    ) -> Result<(), PipelineError> {
        if !matches!(update, ChainUpdate::Committed(_)) {
            self.land(writing).await?;
        }
        match update {
            ChainUpdate::Committed(range) => {
                let prepared = self.prepare(range);
                self.land(writing).await?;
                *writing = Some(self.write(prepared));
                // The write was spawned into this worker's LIFO slot,
                // which other workers do not steal: without a yield it
                // would wait until the next range's classification
                // (milliseconds of CPU when far behind) is done.
                tokio::task::yield_now().await;
            }
            ChainUpdate::Reverted { ancestor } => {
                let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                self.store
                    .revert(self.chain_id(), &names, ancestor)
                    .await
                    .map_err(self.store_error())?;
                self.load_trackers().await?;
                self.publish();
                tracing::info!(chain = %self.chain_name(), ancestor, "reverted history above the common ancestor");
                self.wake_sender();
            }
            ChainUpdate::Stalled { head, since } => self.chain_state(head, since, true).await?,
            ChainUpdate::Resumed { head, at } => self.chain_state(head, at, false).await?,
            ChainUpdate::GapOpened { since, reason } => {
                self.store
                    .gap_opened(self.chain_name(), self.chain_id(), since, &reason)
                    .await
                    .map_err(self.store_error())?;
            }
            ChainUpdate::GapClosed { at } => {
                self.store
                    .gap_closed(self.chain_id(), at)
                    .await
                    .map_err(self.store_error())?;
            }
        }
        Ok(())
    }

    /// The whole chain stalled (`halted`) or resumed: every protocol on it.
    async fn chain_state(
        &mut self,
        head: BlockRef,
        wall_time: u64,
        halted: bool,
    ) -> Result<(), PipelineError> {
        let started = std::time::Instant::now();
        let mut b = Batching::default();
        for m in &self.models {
            let e = detect::stall::evidence(
                self.chain_id(),
                self.chain_name(),
                head,
                wall_time,
                halted,
            );
            b.pending.entry(m.index).or_default().push(e);
        }
        self.flush(&mut b);
        self.snapshot(head.number, &mut b);
        let at = head.number;
        self.store(Prepared::new(at, at, Vec::new(), [0; 3], b.out, started))
            .await
    }

    /// Decodes, detects, classifies and stores the logs and calls of blocks
    /// `from..=to`. `blocks` become the new window and checkpoint (empty in a backfill).
    pub async fn apply(
        &mut self,
        from: u64,
        to: u64,
        logs: &[Log],
        calls: &[CallOutcome],
        blocks: &[BlockRef],
    ) -> Result<(), PipelineError> {
        let started = std::time::Instant::now();
        let classified = self.classify(from, to, logs, calls, &[], blocks);
        let read = [logs.len(), calls.len(), 0];
        self.store(Prepared::new(
            from,
            to,
            blocks.to_vec(),
            read,
            classified,
            started,
        ))
        .await
    }

    fn wake_sender(&self) {
        if let Some(wake) = &self.wake {
            // A full channel already holds a wake-up: nothing is lost.
            let _ = wake.try_send(());
        }
    }

    /// Runs decode → detect → classify over blocks `from..=to`.
    fn classify(
        &mut self,
        from: u64,
        to: u64,
        logs: &[Log],
        calls: &[CallOutcome],
        probes: &[ProbeResult],
        blocks: &[BlockRef],
    ) -> Classified {
        let mut items: Vec<Item> = logs
            .iter()
            .map(Item::Log)
            .chain(calls.iter().map(Item::Call))
            .collect();
        items.sort_by_key(Item::position);
        let known: HashMap<u64, BlockRef> = blocks.iter().map(|b| (b.number, *b)).collect();
        let mut b = Batching {
            cutoff: (!blocks.is_empty()).then(|| to.saturating_sub(WINDOW_BLOCKS)),
            ..Default::default()
        };
        let mut current_tx: Option<(u64, u64)> = None;
        let mut next_block = from;
        for item in &items {
            let (block, tx, _, _) = item.position();
            if current_tx != Some((block, tx)) {
                self.flush(&mut b);
            }
            if block > next_block {
                // Entering a later block: close the ones before it.
                self.end_blocks(next_block, block - 1, &known, &mut b);
                next_block = block;
            }
            current_tx = Some((block, tx));
            b.time = b.time.max(match item {
                Item::Log(l) => l.block_timestamp.unwrap_or_default(),
                Item::Call(c) => c.block_timestamp,
            });
            match item {
                Item::Log(log) => self.on_log(log, &mut b),
                Item::Call(call) => self.on_call(call, &mut b),
            }
        }
        self.flush(&mut b);
        self.end_blocks(next_block, to, &known, &mut b);
        for result in probes {
            self.on_probe(result, &mut b);
            self.flush(&mut b);
        }
        self.snapshot(to, &mut b);
        for (p, (block, tracker)) in std::mem::take(&mut b.below) {
            if let Ok(json) = serde_json::to_string(&tracker) {
                b.out.snapshots.push((p, block, json));
            }
        }
        b.out
    }

    fn on_log(&mut self, log: &Log, b: &mut Batching) {
        let Some(decoded) = self.registry.decode(log) else {
            return;
        };
        let decoded = match decoded {
            Ok(d) => {
                b.out.decoded += 1;
                d
            }
            Err(e) => {
                telemetry::decode_failed(self.chain_name());
                tracing::warn!(chain = %self.chain_name(), error = %e, source = %e.source, "log skipped: it does not decode with its ABI");
                return;
            }
        };
        match detect::pause::signals(&self.config, self.chain_id(), &decoded) {
            Ok(signals) => {
                for s in signals {
                    let halts = s.evidence.changes.iter().any(|c| c.halted);
                    telemetry::signal(if halts { "halt" } else { "resume" });
                    b.pending.entry(s.protocol).or_default().push(s.evidence);
                }
            }
            Err(e) => tracing::warn!(chain = %self.chain_name(), error = %e, "log skipped"),
        }
    }

    fn on_call(&mut self, call: &CallOutcome, b: &mut Batching) {
        let Some(watchers) = self.watchers.get(&call.to) else {
            return;
        };
        let reason =
            (!call.success).then(|| self.registry.revert_reason(call.to, call.revert_data()));
        for &(p, c) in watchers {
            // Every call into the contract counts, nested ones included (with
            // call tracing each call frame is one call).
            if let Some(window) = self.spikes.get_mut(&(p, c)) {
                window.record(call);
            }
            let Some(reason) = &reason else { continue };
            if reason.is_pause() {
                let name = &self.config.protocols[p].contracts[c].name;
                let e = detect::failed_tx::evidence(self.chain_id(), name, call, reason);
                telemetry::signal("failed_call");
                b.pending.entry(p).or_default().push(e);
            }
        }
    }

    /// Closes blocks `first..=last`: revert-spike windows decide per block.
    fn end_blocks(
        &mut self,
        first: u64,
        last: u64,
        known: &HashMap<u64, BlockRef>,
        b: &mut Batching,
    ) {
        if first > last {
            return;
        }
        if self.spikes.values().all(SpikeWindow::is_idle) {
            // Changes pending a snapshot happened in `first`: date them there,
            // so a reorg above `first` keeps them.
            self.snapshot(first, b);
            return;
        }
        for block in first..=last {
            if let Some(h) = known.get(&block) {
                b.time = b.time.max(h.timestamp);
            }
            let time = b.time;
            let mut changes: Vec<((usize, usize), SpikeChange)> = Vec::new();
            for (key, window) in &mut self.spikes {
                if window.is_idle() {
                    continue;
                }
                if let Some(change) = window.end_block(block, time) {
                    changes.push((*key, change));
                }
            }
            changes.sort_by_key(|(k, _)| *k);
            for ((p, c), change) in changes {
                let evidence = self.spike_evidence(p, c, block, known, change);
                telemetry::signal("revert_spike");
                b.pending.entry(p).or_default().extend(evidence);
                self.flush(b);
            }
            self.snapshot(block, b);
        }
    }

    fn spike_evidence(
        &self,
        p: usize,
        c: usize,
        block: u64,
        known: &HashMap<u64, BlockRef>,
        change: SpikeChange,
    ) -> Vec<Evidence> {
        let contract = &self.config.protocols[p].contracts[c];
        let scope = Scope::keyed(contract.name.clone(), detect::revert_spike::SCOPE_KEY);
        let (failed, halted, text) = match change {
            SpikeChange::Started {
                failed,
                calls,
                baseline,
            } => {
                let text = format!(
                    "revert spike: {} of {calls} calls failed in the last {} blocks (baseline {:.1}%)",
                    failed.len(),
                    contract.revert_spike.window_blocks,
                    baseline * 100.0
                );
                (failed, true, text)
            }
            SpikeChange::Cleared { quiet_windows } => (
                Vec::new(),
                false,
                format!("revert spike cleared after {quiet_windows} quiet windows"),
            ),
        };
        // Date the decision by the block, else by the newest failed call.
        let (hash, timestamp) = known
            .get(&block)
            .map(|h| (h.hash, h.timestamp))
            .or_else(|| failed.last().map(|f| (f.block_hash, f.block_timestamp)))
            .unwrap_or((B256::ZERO, 0));
        let mut out = vec![Evidence {
            kind: EvidenceKind::Spike,
            chain_id: self.chain_id(),
            contract: contract.address,
            contract_name: contract.name.clone(),
            tx_hash: B256::ZERO,
            block_number: block,
            block_hash: hash,
            block_timestamp: timestamp,
            log_index: 0,
            event: text,
            args: Vec::new(),
            changes: vec![ScopeChange { scope, halted }],
            log_hash: B256::ZERO,
            at: (timestamp == 0).then_some(crate::store::now_ms() as u64 / 1000),
        }];
        for call in &failed {
            let reason = self.registry.revert_reason(call.to, call.revert_data());
            let mut e = detect::failed_tx::evidence(self.chain_id(), &contract.name, call, &reason);
            e.changes.clear(); // the spike evidence carries the change
            out.push(e);
        }
        out
    }

    fn on_probe(&mut self, result: &ProbeResult, b: &mut Batching) {
        let (p, i) = result.probe;
        let protocol = &self.config.protocols[p];
        let probe = &protocol.probes[i];
        let contract = &protocol.contracts[probe.contract];
        let first = self.probed.insert(result.probe);
        let output = match &result.output {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(protocol = %protocol.name, probe = %probe.function.signature(), error = %e, "probe call failed");
                return;
            }
        };
        let Some((healthy, value)) = detect::probe::healthy(probe, output) else {
            tracing::warn!(protocol = %protocol.name, probe = %probe.function.signature(), "probe answer does not decode");
            return;
        };
        let scope = detect::probe::scope(probe, &contract.name);
        let halted_now = self
            .trackers
            .get(&p)
            .is_some_and(|t| t.halted.contains(&scope));
        if halted_now != healthy {
            return; // agrees with what the history says: nothing new
        }
        telemetry::signal("probe");
        let e = detect::probe::evidence(
            self.chain_id(),
            probe,
            (&contract.name, contract.address),
            result,
            healthy,
            &value,
            first,
        );
        b.pending.entry(p).or_default().push(e);
    }

    /// Publishes every protocol's current state to the shared status.
    pub(super) fn publish(&self) {
        for s in self.statuses() {
            self.status.set_protocol(s);
        }
    }

    /// Each protocol's state as classified so far.
    fn statuses(&self) -> Vec<ProtocolStatus> {
        let chain = self.chain_name();
        let untouched = Tracker::default();
        self.models
            .iter()
            .map(|m| {
                let tracker = self.trackers.get(&m.index).unwrap_or(&untouched);
                ProtocolStatus {
                    protocol: m.name.clone(),
                    chain: chain.to_string(),
                    state: tracker.state(m),
                    halted_scopes: tracker.halted.iter().map(|s| s.to_string()).collect(),
                    open_incident: tracker.open.as_ref().map(|o| o.key.clone()),
                }
            })
            .collect()
    }

    /// What to publish once `updates` are stored: the states now, unless
    /// nothing changed or this is a backfill (which publishes nothing).
    fn statuses_after(&self, updates: &[IncidentUpdate]) -> Vec<ProtocolStatus> {
        if self.backfill || updates.is_empty() {
            Vec::new()
        } else {
            self.statuses()
        }
    }

    /// Applies the pending evidence as one transaction per protocol.
    fn flush(&mut self, b: &mut Batching) {
        for (protocol, evidence) in std::mem::take(&mut b.pending) {
            let Some(model) = self.models.iter().find(|m| m.index == protocol) else {
                continue;
            };
            let tracker = self.trackers.entry(protocol).or_default();
            let before = tracker.clone();
            if let Some(u) = tracker.apply(model, evidence) {
                b.out.updates.push(u);
            }
            if *tracker != before && !b.changed.contains(&protocol) {
                b.changed.push(protocol);
            }
        }
    }

    /// Snapshots the trackers that changed, as of the end of `block`.
    fn snapshot(&self, block: u64, b: &mut Batching) {
        for p in b.changed.drain(..) {
            // A backfill writes no snapshots.
            let Some(t) = self.trackers.get(&p).filter(|_| !self.backfill) else {
                continue;
            };
            if b.cutoff.is_some_and(|c| block <= c) {
                b.below.insert(p, (block, t.clone()));
            } else if let Ok(json) = serde_json::to_string(t) {
                b.out.snapshots.push((p, block, json));
            }
        }
    }
}

/// A committed range classified, with its rows built.
struct Prepared {
    from: u64,
    to: u64,
    /// The new window and checkpoint (none in a backfill or a chain stall).
    blocks: Vec<BlockRef>,
    /// Logs, calls and probes read for the range.
    read: [usize; 3],
    classified: Classified,
    rows: Vec<Rows>,
    /// Classifying and building the rows, since `started`.
    classified_in: std::time::Duration,
}

impl Prepared {
    fn new(
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
            classified,
            rows,
            classified_in: started.elapsed(),
        }
    }
}

/// A range being written on its own task.
struct Writing {
    task: tokio::task::JoinHandle<WriteResult>,
    range: Written,
}

/// The write's outcome, and what it borrowed back.
type WriteResult = (
    Result<(), crate::store::StoreError>,
    Vec<IncidentUpdate>,
    Vec<BlockRef>,
    std::time::Duration,
);
type WriteDone = Result<WriteResult, tokio::task::JoinError>;

/// What landing a written range needs to know of it.
struct Written {
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
}

impl Writer {
    /// Writes one classified range: the history, the trackers that changed
    /// and, for a live range, the window and the checkpoint.
    async fn commit(
        &self,
        updates: &[IncidentUpdate],
        rows: Vec<Rows>,
        snapshots: Vec<(usize, u64, String)>,
        blocks: &[BlockRef],
    ) -> Result<(), crate::store::StoreError> {
        let Writer {
            store,
            config,
            chain,
            live,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use alloy::primitives::{Bytes, LogData, keccak256};

    use super::*;
    use crate::config::StoreConfig;
    use crate::store::{IncidentFilter, IncidentState};

    const VAULT: Address = Address::repeat_byte(0x11);

    fn config() -> Config {
        let abi = Path::new(env!("CARGO_MANIFEST_DIR")).join("abis/oz-pausable.json");
        let text = format!(
            "[[chains]]\nname = \"anvil\"\nchain_id = 31337\nrpc = [\"http://127.0.0.1:1\"]\n\
             [[protocols]]\nname = \"Vault\"\nchain = \"anvil\"\n\
             [[protocols.contracts]]\nname = \"vault\"\naddress = \"{VAULT}\"\nabi = \"{}\"\npreset = \"oz-pausable\"\n",
            abi.display()
        );
        crate::config::parse(&text, Path::new("test.toml")).expect("config")
    }

    /// Block `n` of a chain; `fork` tells two chains apart.
    fn block(n: u64, fork: u8) -> BlockRef {
        let hash = |n: u64, fork: u8| {
            if n <= 550 {
                keccak256(n.to_be_bytes()) // both chains share blocks up to 550
            } else {
                keccak256([&n.to_be_bytes()[..], &[fork]].concat())
            }
        };
        BlockRef {
            number: n,
            hash: hash(n, fork),
            parent_hash: hash(n - 1, fork),
            timestamp: 1_700_000_000 + n * 12,
        }
    }

    /// `Paused(address)` (odd `n`) or `Unpaused(address)` (even) in block `b`.
    fn toggle(b: &BlockRef) -> Log {
        let event: &[u8] = if b.number % 2 == 1 {
            b"Paused(address)"
        } else {
            b"Unpaused(address)"
        };
        Log {
            inner: alloy::primitives::Log {
                address: VAULT,
                data: LogData::new_unchecked(
                    vec![keccak256(event)],
                    Bytes::from(Address::repeat_byte(0x22).into_word().to_vec()),
                ),
            },
            block_hash: Some(b.hash),
            block_number: Some(b.number),
            block_timestamp: Some(b.timestamp),
            transaction_hash: Some(keccak256(b.hash)),
            transaction_index: Some(0),
            log_index: Some(0),
            removed: false,
        }
    }

    fn range(blocks: Vec<BlockRef>, logs: Vec<Log>) -> ChainUpdate {
        ChainUpdate::Committed(CommittedRange {
            from: blocks[0].number,
            tip: blocks[blocks.len() - 1],
            blocks,
            logs,
            calls: Vec::new(),
            probes: Vec::new(),
        })
    }

    /// A reorg arriving while the range before it is still being written
    /// (300 incidents make the write take a while; the revert is already
    /// queued): the write lands first, then the revert withdraws what the
    /// orphaned blocks opened, and the new branch is applied on top.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revert_queued_behind_a_range_being_written_applies_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig {
            sqlite_path: dir.path().join("history.db"),
        })
        .await
        .unwrap();
        let processor = Processor::new(Arc::new(config()), 0, store.clone())
            .await
            .unwrap();
        let status = processor.status.clone();
        status.register_chain("anvil", 31337, std::time::Duration::from_secs(60));
        let (tx, rx) = mpsc::channel(4);
        let first: Vec<BlockRef> = (1..=600).map(|n| block(n, 0)).collect();
        let logs = first.iter().map(toggle).collect();
        tx.send(range(first, logs)).await.unwrap();
        tx.send(ChainUpdate::Reverted { ancestor: 550 })
            .await
            .unwrap();
        let branch = block(551, 1);
        tx.send(range(vec![branch], vec![toggle(&branch)]))
            .await
            .unwrap();
        drop(tx);
        processor.run(rx).await.unwrap();

        let all = store
            .list(&IncidentFilter {
                include_withdrawn: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let count = |s: IncidentState| all.iter().filter(|i| i.state == s).count();
        // Paused at 1, 3, …, 549 and resolved a block later: 275 stand.
        assert_eq!(count(IncidentState::Resolved), 275);
        // Opened at 551, 553, …, 599 on the orphaned branch.
        assert_eq!(count(IncidentState::Withdrawn), 25);
        // Paused at 551 on the new branch.
        assert_eq!(count(IncidentState::Open), 1);
        assert_eq!(all.len(), 301);
        let window = store.window(31337).await.unwrap();
        assert_eq!(window.last().copied(), Some(branch));
        assert_eq!(
            status.chains()["anvil"].processed,
            Some((551, branch.timestamp))
        );
        assert!(store.verify_history().await.unwrap().problems.is_empty());
    }
}

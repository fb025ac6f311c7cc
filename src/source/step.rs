//! One round of following: read the head, plan the range after the
//! checkpoint, read its headers, logs and calls, check that they hang
//! together, and commit it; or walk back a reorg.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use alloy::eips::BlockId;
use alloy::providers::{DynProvider, Provider};
use tokio::sync::mpsc;

use super::blocks::{
    Block, fetch_blocks, fetch_full_block, fetch_header, fetch_headers_batch, fill_timestamps,
};
use super::calls::{run_probes, watch_calls};
use super::endpoints::rpc_error;
use super::logs::{LIVE_MAX_SPAN, get_logs_by_hashes, get_logs_split, unindexed};
use super::traces::{fetch_traces, trace_outcomes};
use super::{
    BLOOM_ATTEMPTS, ChainSource, HEAD_REUSE, HEAD_TIMEOUT, MAX_FULL_RANGE_BLOCKS, NEAR_HEAD_BLOCKS,
    ProbeCall, Progress, SourceError, wall_secs,
};
use crate::config::StartBlock;
use crate::model::{BlockRef, ChainUpdate, CommittedRange};
use crate::telemetry;

/// A view call that failed is tried again after this many blocks.
const RETRY_FAILED_READ_BLOCKS: u64 = 5;

impl ChainSource {
    /// One round: `Ok(None)` when the receiver is gone.
    pub(super) async fn step(
        &mut self,
        tx: &mpsc::Sender<ChainUpdate>,
    ) -> Result<Option<Progress>, SourceError> {
        let i = self.current;
        let p = self
            .endpoints
            .get_mut(i)
            .provider(&self.chain.name, self.chain.chain_id)
            .await?;
        let confirmations = self.chain.confirmations;
        let behind = |head: u64, next: Option<u64>| {
            next.is_some_and(|n| n <= head.saturating_sub(confirmations))
        };
        // A round that reads up to a head read before is not the last one:
        // the next reads the head again before it may go idle.
        let mut reused = false;
        let pushed = self.pushed.take();
        let head = match (&pushed, self.head_read) {
            // Pushed by the endpoint just now: as good as read.
            (Some(b), _) => b.block.number,
            (None, Some((head, at))) if at.elapsed() < HEAD_REUSE && behind(head, self.next) => {
                reused = true;
                head
            }
            _ => self.read_head(&p).await?,
        };
        if !reused {
            self.head_read = Some((head, Instant::now()));
            self.head_observed(i, head);
        }
        if !self.record_resume(&p, head, tx).await? {
            return Ok(None);
        }
        let target = head.saturating_sub(confirmations);
        let from = *self.next.get_or_insert(match self.chain.start_block {
            StartBlock::Latest => target,
            StartBlock::Number(n) => n,
        });
        let checkpoint = self.window.tip();
        // A head below what was processed is an endpoint behind the
        // others (a load-balanced node, a node syncing), not a reorg.
        if let Some(cp) = checkpoint
            && target < cp.number
        {
            return Err(self.behind(head, cp.number));
        }

        if from > target {
            // Nothing new: make sure the checkpoint is still canonical (a
            // same-height reorg shows up only here).
            let Some(cp) = checkpoint else {
                return Ok(Some(Progress::Idle));
            };
            return match self.header(&p, cp.number).await? {
                None => Err(self.behind(head, cp.number)),
                Some(h) if h.block.hash == cp.hash => Ok(Some(Progress::Idle)),
                Some(_) => self.revert(&p, head, tx).await,
            };
        }

        // Watching calls needs every block's transactions (smaller steps),
        // unless the node can filter traces for a range far from the head.
        let ep = self.endpoints.get(i);
        let watching = self.watch.needs_blocks();
        let traced = watching && ep.trace_filter.load(Relaxed) && target - from >= NEAR_HEAD_BLOCKS;
        let full = watching && !traced;
        let max_range = if full {
            MAX_FULL_RANGE_BLOCKS
        } else {
            ep.log_span.load(Relaxed).max(1)
        };
        let to = target.min(from + max_range - 1);
        let near = full || to - from < NEAR_HEAD_BLOCKS;
        let numbers = header_numbers(from, to, near, target.saturating_sub(self.window_blocks));
        // Near the head, every block's logs are read by its hash: a node that
        // lacks the block answers with an error, never with an empty list.
        // A block pushed over ws is the whole range with its header at hand;
        // polled, the headers (with the transactions when they are watched)
        // are read first.
        let at_head = to - from < NEAR_HEAD_BLOCKS;
        let pushed = pushed.filter(|b| b.block.number == from && from == to);
        let by_hash = match pushed {
            Some(b) => Some((vec![b], false)),
            None if at_head => Some((fetch_blocks(&p, ep, &numbers, full).await?, full)),
            None => None,
        };
        let (logs, blocks, traces) = match by_hash {
            Some((blocks, has_txs)) => {
                let logs = get_logs_by_hashes(&p, ep, &self.filter, &blocks);
                let blocks = async {
                    if !full || has_txs {
                        return Ok(blocks.clone());
                    }
                    let hash = blocks[0].block.hash;
                    fetch_full_block(&p, ep, BlockId::hash(hash))
                        .await?
                        .map(|b| vec![b])
                        .ok_or_else(|| SourceError::MissingBlock {
                            endpoint: ep.redacted.clone(),
                            number: from,
                        })
                };
                let (logs, blocks) = tokio::join!(logs, blocks);
                (logs, blocks, Ok(Some(Vec::new())))
            }
            None => {
                let logs = get_logs_split(
                    &p,
                    ep,
                    &self.filter,
                    (from, to),
                    &ep.log_span,
                    LIVE_MAX_SPAN,
                );
                let blocks = async {
                    match near {
                        true => fetch_blocks(&p, ep, &numbers, full).await,
                        false => fetch_headers_batch(&p, ep, &numbers).await,
                    }
                };
                let traces = async {
                    match traced {
                        true => fetch_traces(&p, ep, from, to, &self.watch).await,
                        false => Ok(Some(Vec::new())),
                    }
                };
                tokio::join!(logs, blocks, traces)
            }
        };
        let Some(traces) = traces? else {
            return Ok(Some(Progress::More)); // read again, block by block
        };
        let mut logs = logs?;
        let blocks = blocks?;
        let headers: Vec<BlockRef> = blocks.iter().map(|b| b.block).collect();

        // The new range must hang off the checkpoint.
        if let Some(cp) = checkpoint
            && cp.number + 1 == from
            && headers[0].parent_hash != cp.hash
        {
            return self.revert(&p, head, tx).await;
        }
        // Consecutive headers must link; the chain may have moved between
        // calls, in which case this round is simply read again.
        let unlinked = headers
            .windows(2)
            .any(|w| w[1].number == w[0].number + 1 && w[1].parent_hash != w[0].hash);
        if unlinked {
            tracing::debug!(chain = %self.chain.name, from, to, "chain moved while reading; reading again");
            return Ok(Some(Progress::More));
        }
        let by_number: BTreeMap<u64, BlockRef> = headers.iter().map(|b| (b.number, *b)).collect();
        let consistent = logs.iter().all(|l| match (l.block_number, l.block_hash) {
            (Some(n), Some(h)) => {
                (from..=to).contains(&n) && by_number.get(&n).is_none_or(|b| b.hash == h)
            }
            _ => false,
        });
        let consistent = consistent
            && traces.iter().all(|t| {
                (from..=to).contains(&t.block_number)
                    && by_number
                        .get(&t.block_number)
                        .is_none_or(|b| b.hash == t.block_hash)
            });
        if !consistent {
            tracing::debug!(chain = %self.chain.name, from, to, "logs from another branch; reading again");
            return Ok(Some(Progress::More));
        }
        self.check_indexed(&blocks, &logs)?;
        let ep = self.endpoints.get(i);
        fill_timestamps(&p, ep, &mut logs, &by_number).await?;
        let calls = if full {
            watch_calls(&p, ep, &blocks, &self.watch).await?
        } else if traced {
            trace_outcomes(&p, ep, traces, &logs, &by_number, &self.watch.halt_reverts).await?
        } else {
            Vec::new()
        };

        let tip = headers[headers.len() - 1];
        let due: Vec<&ProbeCall> = self
            .watch
            .probes
            .iter()
            .filter(|pc| {
                let refreshed = !pc.refresh_on.is_empty()
                    && logs.iter().any(|l| {
                        l.topics().first().is_some_and(|t| {
                            pc.refresh_on
                                .iter()
                                .any(|(a, e)| *a == l.address() && e == t)
                        })
                    });
                refreshed
                    || self
                        .probed
                        .get(&(pc.kind, pc.id))
                        .is_none_or(|&(_, due)| tip.number >= due)
            })
            .collect();
        let probes = run_probes(&p, ep, tip, &due).await;
        for (r, pc) in probes.iter().zip(&due) {
            // A read that failed (a rate limit, a node that lost the
            // state) is tried again a few blocks on, not a whole period
            // later: a complete set missing for 1,000 blocks would show a
            // pool pause as degraded.
            let wait = match r.output {
                Ok(_) => pc.every_blocks,
                Err(_) => pc.every_blocks.min(RETRY_FAILED_READ_BLOCKS),
            };
            self.probed
                .insert((r.kind, r.probe), (tip.number, tip.number + wait));
        }
        self.window.extend(&headers);
        self.next = Some(to + 1);
        let update = ChainUpdate::Committed(CommittedRange {
            from,
            tip,
            blocks: headers,
            logs,
            calls,
            probes,
        });
        if tx.send(update).await.is_err() {
            return Ok(None);
        }
        if self.rescanning.is_some_and(|old| to >= old) {
            self.rescanning = None;
            self.status.set_problem(&self.chain.name, None);
            if tx
                .send(ChainUpdate::GapClosed { at: wall_secs() })
                .await
                .is_err()
            {
                return Ok(None);
            }
        }
        Ok(Some(if to < target || reused {
            Progress::More
        } else {
            Progress::Idle
        }))
    }

    /// `eth_blockNumber` on the current endpoint, within [`HEAD_TIMEOUT`]:
    /// a connection that stays open but answers nothing is left.
    async fn read_head(&mut self, p: &DynProvider) -> Result<u64, SourceError> {
        let ep = self.endpoints.get(self.current);
        telemetry::rpc_request(&ep.redacted, "eth_blockNumber");
        let started = Instant::now();
        let head = match tokio::time::timeout(HEAD_TIMEOUT, p.get_block_number()).await {
            Ok(head) => head.map_err(|e| rpc_error(ep, "eth_blockNumber", &e))?,
            Err(_) => {
                return Err(SourceError::Timeout {
                    endpoint: ep.redacted.clone(),
                    waited: HEAD_TIMEOUT,
                });
            }
        };
        self.endpoints.latency_seen(self.current, started.elapsed());
        Ok(head)
    }

    fn behind(&self, head: u64, checkpoint: u64) -> SourceError {
        SourceError::Behind {
            endpoint: self.endpoints.get(self.current).redacted.clone(),
            head,
            checkpoint,
        }
    }

    /// An empty log answer for a block whose bloom says it holds monitored
    /// logs is not believed: the node has the header but not yet the logs.
    /// After [`BLOOM_ATTEMPTS`] reads it is (a bloom can match by chance).
    fn check_indexed(
        &mut self,
        blocks: &[Block],
        logs: &[alloy::rpc::types::Log],
    ) -> Result<(), SourceError> {
        let Some(b) = unindexed(&self.filter, blocks, logs) else {
            self.distrusted = None;
            return Ok(());
        };
        let attempts = match self.distrusted {
            Some((hash, n)) if hash == b.block.hash => n + 1,
            _ => 1,
        };
        if attempts >= BLOOM_ATTEMPTS {
            tracing::warn!(chain = %self.chain.name, block = b.block.number, attempts,
                "the bloom matches but every read found no monitored log; taking it as a false positive");
            self.distrusted = None;
            return Ok(());
        }
        self.distrusted = Some((b.block.hash, attempts));
        Err(SourceError::LogsNotIndexed {
            endpoint: self.endpoints.get(self.current).redacted.clone(),
            number: b.block.number,
        })
    }

    /// After a stall, records its end once the new head's header is read;
    /// a failed read leaves it for the next round. `false` when the receiver is gone.
    async fn record_resume(
        &mut self,
        p: &DynProvider,
        head: u64,
        tx: &mpsc::Sender<ChainUpdate>,
    ) -> Result<bool, SourceError> {
        let Some(at) = self.health.resuming() else {
            return Ok(true);
        };
        let Some(block) = self.header(p, head).await? else {
            return Ok(true);
        };
        self.health.resumed();
        tracing::info!(chain = %self.chain.name, head, "chain producing blocks again");
        Ok(tx
            .send(ChainUpdate::Resumed {
                head: block.block,
                at,
            })
            .await
            .is_ok())
    }

    /// Walks the window back to the newest block that is still canonical on
    /// this endpoint and reports every block above it as reverted. A block
    /// the endpoint does not have means it is behind, not that the chain
    /// reorganised; a window of which nothing is canonical is a reorg
    /// deeper than it, re-read from `reorg_rescan_blocks` below the checkpoint.
    async fn revert(
        &mut self,
        p: &DynProvider,
        head: u64,
        tx: &mpsc::Sender<ChainUpdate>,
    ) -> Result<Option<Progress>, SourceError> {
        self.head_read = None; // the chain changed: read the head again
        let Some(checkpoint) = self.window.tip() else {
            return Ok(Some(Progress::More));
        };
        let mut ancestor = None;
        for b in self.window.newest_first() {
            match self.header(p, b.number).await? {
                None => return Err(self.behind(head, b.number)),
                Some(h) if h.block.hash == b.hash => {
                    ancestor = Some(b.number);
                    break;
                }
                Some(_) => {}
            }
        }
        let ancestor = match ancestor {
            // The checkpoint is canonical: the answers came from two nodes.
            Some(a) if a == checkpoint.number => {
                tracing::debug!(chain = %self.chain.name, "checkpoint still canonical; reading again");
                return Ok(Some(Progress::More));
            }
            Some(a) => a,
            None => {
                let ancestor = checkpoint
                    .number
                    .saturating_sub(self.chain.reorg_rescan_blocks);
                let reason = format!(
                    "reorg deeper than the {}-block window below block {}: blocks {}..={} are read again",
                    self.window_blocks,
                    checkpoint.number,
                    ancestor + 1,
                    checkpoint.number
                );
                tracing::error!(chain = %self.chain.name, checkpoint = checkpoint.number, ancestor,
                    window = self.window_blocks, "deep reorg: no block of the window is canonical; re-reading");
                telemetry::deep_reorg(&self.chain.name);
                self.status
                    .set_problem(&self.chain.name, Some(reason.clone()));
                self.rescanning = Some(checkpoint.number);
                let gap = ChainUpdate::DeepReorg {
                    since: wall_secs(),
                    reason,
                };
                if tx.send(gap).await.is_err() {
                    return Ok(None);
                }
                ancestor
            }
        };
        tracing::warn!(chain = %self.chain.name, ancestor, reverted_from = ancestor + 1,
            old_head = checkpoint.number, "reorg: blocks above the common ancestor are reverted");
        self.window.truncate_above(ancestor);
        // Probes taken on the orphaned blocks are taken again on the new branch.
        self.probed.retain(|_, (at, _)| *at <= ancestor);
        self.health.rebase(head, wall_secs());
        self.next = Some(ancestor + 1);
        if tx.send(ChainUpdate::Reverted { ancestor }).await.is_err() {
            return Ok(None);
        }
        Ok(Some(Progress::More))
    }

    async fn header(&self, p: &DynProvider, number: u64) -> Result<Option<Block>, SourceError> {
        fetch_header(p, self.endpoints.get(self.current), number).await
    }
}

/// The headers a range needs: every block near the head (their links are
/// checked), and every block that will stay in the reorg window (so a later
/// walk-back reverts exactly the orphaned blocks); far behind, its two ends.
fn header_numbers(from: u64, to: u64, near: bool, window_floor: u64) -> Vec<u64> {
    let dense_from = if near { from } else { window_floor.max(from) };
    let mut numbers = Vec::new();
    if dense_from > from {
        numbers.push(from);
    }
    if dense_from > to {
        numbers.push(to);
    } else {
        numbers.extend(dense_from..=to);
    }
    numbers
}

#[cfg(test)]
mod tests {
    use super::header_numbers;

    #[test]
    fn a_range_reads_every_header_that_stays_in_the_window() {
        assert_eq!(header_numbers(10, 12, true, 0), vec![10, 11, 12]);
        assert_eq!(
            header_numbers(100, 2099, false, 5000),
            vec![100, 2099],
            "far behind: ends only"
        );
        let tail = header_numbers(100, 2099, false, 2099 - 128);
        assert_eq!(tail.first(), Some(&100));
        assert_eq!(tail[1..], (1971..=2099).collect::<Vec<_>>()[..]);
        assert_eq!(header_numbers(5, 5, false, 0), vec![5]);
    }
}

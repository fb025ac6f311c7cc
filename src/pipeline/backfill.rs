//! Rebuilding the halt history of a block range: the same processor as
//! `run`, fed by the adaptive log fetcher instead of the live source.

use super::{PipelineError, Processor};
use crate::config::Config;
use crate::source::{LogFetcher, Watch};
use crate::store::Store;

/// How far a backfill is, for progress lines and the final summary.
#[derive(Debug, Clone, Default)]
pub struct BackfillProgress {
    pub done_blocks: u64,
    pub total_blocks: u64,
    pub logs: u64,
    pub elapsed: std::time::Duration,
    /// Time the pipeline spent waiting for the node's answers.
    pub node_wait: std::time::Duration,
}

impl BackfillProgress {
    pub fn blocks_per_second(&self) -> f64 {
        self.done_blocks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn eta(&self) -> std::time::Duration {
        let left = self.total_blocks.saturating_sub(self.done_blocks) as f64;
        std::time::Duration::from_secs_f64(left / self.blocks_per_second().max(1e-9))
    }
}

/// Ranges of a backfill being read at once.
const BACKFILL_IN_FLIGHT: usize = 4;

/// Rebuilds the halt history of `from..=to` on chain `chain_name` through the
/// same decode → detect → classify → store path as `run`. Incidents, evidence
/// and transitions are keyed by chain data, so a re-run, or a range `run`
/// already saw, adds nothing. Trackers start operational at `from`.
pub async fn backfill(
    config: Config,
    store: Store,
    chain_name: &str,
    from: u64,
    to: u64,
    mut progress: impl FnMut(&BackfillProgress),
) -> Result<BackfillProgress, PipelineError> {
    use futures::StreamExt;
    let chain = config
        .chains
        .iter()
        .position(|c| c.name == chain_name)
        .ok_or_else(|| PipelineError::UnknownChain(chain_name.to_string()))?;
    let config = std::sync::Arc::new(config);
    let mut processor = Processor::new(config.clone(), chain, store, super::Mode::Backfill).await?;
    let source_err = |source| PipelineError::Source {
        chain: chain_name.to_string(),
        source,
    };
    let fetcher = LogFetcher::connect(
        &config.chains[chain],
        processor.registry().addresses(),
        processor.registry().topics(),
    )
    .await
    .map_err(source_err)?;
    // Probes read current state, not history. Complete sets are read once,
    // on the range's last block: the reserves the market had by then.
    let plan = super::follow::watch_plan(&config, chain, &processor);
    let (sets, _): (Vec<_>, Vec<_>) = plan
        .probes
        .iter()
        .cloned()
        .partition(|p| p.kind == crate::model::ProbeKind::ScopeSet);
    if !sets.is_empty() {
        let read = fetcher.read_at(to, &sets).await.map_err(source_err)?;
        processor.apply_scope_sets(&read);
    }
    let fetcher = fetcher.with_watch(Watch {
        probes: Vec::new(),
        ..plan
    });
    let fetcher = &fetcher;
    let ranges = futures::stream::unfold(from, move |next| async move {
        (next <= to).then(|| {
            let end = to.min(next.saturating_add(fetcher.chunk() - 1));
            ((next, end), end + 1)
        })
    });
    let results = ranges
        .map(|(a, b)| async move { (a, b, fetcher.fetch(a, b).await) })
        .buffered(BACKFILL_IN_FLIGHT);
    let mut results = std::pin::pin!(results);
    let started = std::time::Instant::now();
    let mut state = BackfillProgress {
        total_blocks: to.saturating_sub(from) + 1,
        ..Default::default()
    };
    loop {
        let waiting = std::time::Instant::now();
        let Some((a, b, logs)) = results.next().await else {
            break;
        };
        state.node_wait += waiting.elapsed();
        let fetched = logs.map_err(source_err)?;
        processor
            .apply_backfill(a, b, &fetched.logs, &fetched.calls, fetched.times)
            .await?;
        state.done_blocks += b - a + 1;
        state.logs += fetched.logs.len() as u64;
        state.elapsed = started.elapsed();
        progress(&state);
    }
    state.elapsed = started.elapsed();
    Ok(state)
}

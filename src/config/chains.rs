//! `[[chains]]`: endpoints, polling, start block, stall limits.

use std::collections::HashSet;
use std::time::Duration;

use super::*;

impl Validator {
    pub(super) fn chains(&mut self, value: Option<toml::Value>) -> Vec<ChainConfig> {
        let mut chains = Vec::new();
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for (i, item) in self.array("chains", value).into_iter().enumerate() {
            let key = format!("chains[{i}]");
            let Some(raw) = self.element::<RawChain>(&key, item) else {
                continue;
            };
            self.unique_name(&key, "chain", &raw.name, &mut names);
            if !ids.insert(raw.chain_id) {
                self.problem(
                    format!("{key}.chain_id"),
                    format!("chain_id {} is already used by another chain", raw.chain_id),
                );
            }
            if raw.rpc.is_empty() {
                self.problem(format!("{key}.rpc"), "expected at least one endpoint URL");
            }
            let rpc: Vec<RpcEndpoint> = raw
                .rpc
                .into_iter()
                .map(|r| match r {
                    RawRpc::Url(url) => RpcEndpoint {
                        url,
                        max_requests_per_second: None,
                    },
                    RawRpc::Limited(l) => RpcEndpoint {
                        url: l.url,
                        max_requests_per_second: l.max_requests_per_second,
                    },
                })
                .collect();
            for (j, endpoint) in rpc.iter().enumerate() {
                let url = &endpoint.url;
                match endpoint.max_requests_per_second {
                    Some(0) => self.problem(
                        format!("{key}.rpc[{j}].max_requests_per_second"),
                        "expected a positive number of requests",
                    ),
                    Some(_) if url.starts_with("ws") => self.problem(
                        format!("{key}.rpc[{j}].max_requests_per_second"),
                        "expected only on http(s) endpoints: a WebSocket's subscription cannot be throttled here",
                    ),
                    _ => {}
                }
                let scheme = url.split("://").next().unwrap_or("");
                let host_ok = url.split("://").nth(1).is_some_and(|h| !h.is_empty());
                if !["http", "https", "ws", "wss"].contains(&scheme) || !host_ok {
                    self.problem(
                        format!("{key}.rpc[{j}]"),
                        format!(
                            "expected an http(s):// or ws(s):// URL, found `{}`",
                            crate::redact_url(url)
                        ),
                    );
                }
            }
            if raw.reorg_rescan_blocks == 0 {
                self.problem(
                    format!("{key}.reorg_rescan_blocks"),
                    "expected a positive number of blocks",
                );
            }
            if raw.stall_after_seconds == 0 {
                self.problem(
                    format!("{key}.stall_after_seconds"),
                    "expected a positive number of seconds",
                );
            }
            if raw.poll_interval_ms == 0 {
                self.problem(
                    format!("{key}.poll_interval_ms"),
                    "expected a positive number of milliseconds",
                );
            }
            let start_block = match raw.start_block {
                None => StartBlock::Latest,
                Some(toml::Value::String(s)) if s == "latest" => StartBlock::Latest,
                Some(toml::Value::Integer(n)) if n >= 0 => StartBlock::Number(n as u64),
                Some(other) => {
                    self.problem(
                        format!("{key}.start_block"),
                        format!("expected \"latest\" or a block number, found `{other}`"),
                    );
                    StartBlock::Latest
                }
            };
            if let Some(t) = &raw.explorer_tx_url
                && !t.contains("{hash}")
            {
                self.problem(
                    format!("{key}.explorer_tx_url"),
                    "expected a URL template containing `{hash}`",
                );
            }
            chains.push(ChainConfig {
                name: raw.name,
                chain_id: raw.chain_id,
                rpc,
                confirmations: raw.confirmations,
                poll_interval: Duration::from_millis(raw.poll_interval_ms.max(1)),
                start_block,
                explorer_tx_url: raw.explorer_tx_url,
                stall_after: Duration::from_secs(raw.stall_after_seconds.max(1)),
                failed_tx: raw.failed_tx || raw.trace_calls,
                trace_calls: raw.trace_calls,
                reorg_rescan_blocks: raw.reorg_rescan_blocks,
            });
        }
        chains
    }
}

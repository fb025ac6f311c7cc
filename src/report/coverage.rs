//! What was observed of a chain in a period: its observed spans, merged,
//! less its monitoring gaps. Uptime, MTBF and the status page's bar count
//! only this time.

use crate::store::{GapRecord, ObservedSpan};

/// The parts of `since..until` observed of `chain`: its observed spans,
/// merged, less its monitoring gaps; sorted, disjoint `(from, to)` pairs.
pub fn watched_spans(
    chain: &str,
    observed: &[ObservedSpan],
    gaps: &[GapRecord],
    since: u64,
    until: u64,
) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = observed
        .iter()
        .filter(|o| o.chain == chain)
        .map(|o| (o.first_time.max(since), o.last_time.min(until)))
        .filter(|(a, b)| a < b)
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    for g in gaps.iter().filter(|g| g.chain == chain) {
        let (ga, gb) = (g.started_at, g.ended_at.unwrap_or(until));
        merged = merged
            .into_iter()
            .flat_map(|(a, b)| {
                if gb <= a || ga >= b {
                    vec![(a, b)]
                } else {
                    [(a, ga.max(a)), (gb.min(b), b)]
                        .into_iter()
                        .filter(|(x, y)| x < y)
                        .collect()
                }
            })
            .collect();
    }
    merged
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A span of `chain` whose block numbers are its times (tests only).
    pub(in crate::report) fn span(chain: &str, first_time: u64, last_time: u64) -> ObservedSpan {
        ObservedSpan {
            chain: chain.into(),
            chain_id: 1,
            first_block: first_time,
            first_time,
            last_block: last_time,
            last_time,
        }
    }

    #[test]
    fn overlapping_spans_count_once_and_a_gap_is_a_hole() {
        let gaps = [GapRecord {
            chain: "c".into(),
            chain_id: 1,
            started_at: 500,
            ended_at: Some(600),
            reason: "r".into(),
        }];
        let spans = [
            span("c", 0, 1_000),
            span("c", 800, 2_000),
            span("d", 0, 9_000),
        ];
        assert_eq!(
            watched_spans("c", &spans, &gaps, 0, 10_000),
            vec![(0, 500), (600, 2_000)]
        );
        // Clipped to the period; an open gap runs to its end.
        let open = [GapRecord {
            ended_at: None,
            started_at: 1_500,
            ..gaps[0].clone()
        }];
        assert_eq!(
            watched_spans("c", &spans, &open, 100, 1_800),
            vec![(100, 1_500)]
        );
    }
}

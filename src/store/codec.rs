//! Values as the store writes and reads them: wall-clock milliseconds,
//! unix seconds, hashes and states as text, RFC 3339 times. A leaf: both
//! backends and the records use it.

use std::str::FromStr;

use alloy::primitives::B256;

use super::error::{Result, StoreError};
use crate::model::{ProtocolState, TransitionKind};

/// Wall clock in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Unix seconds as SQLite stores them; a time past `i64::MAX` (an open end
/// such as `u64::MAX`) is the end of time, not a negative number.
pub(in crate::store) fn seconds(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

pub(in crate::store) fn parse_b256(s: &str) -> Result<B256> {
    B256::from_str(s).map_err(|_| StoreError::Corrupt {
        what: "hash",
        value: s.into(),
    })
}

pub(in crate::store) fn parse_state(s: &str) -> Result<ProtocolState> {
    ProtocolState::parse(s).ok_or_else(|| StoreError::Corrupt {
        what: "protocol state",
        value: s.into(),
    })
}

pub(in crate::store) fn parse_kind(s: &str) -> Result<TransitionKind> {
    TransitionKind::parse(s).ok_or_else(|| StoreError::Corrupt {
        what: "transition kind",
        value: s.into(),
    })
}

pub(in crate::store) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    s: &str,
) -> Result<T> {
    serde_json::from_str(s).map_err(|_| StoreError::Corrupt {
        what,
        value: s.into(),
    })
}

/// Formats unix seconds as RFC 3339 UTC, e.g. `2026-11-20T14:03:00Z`.
pub fn format_time(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

pub(crate) mod rfc3339 {
    pub fn serialize<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*v))
    }
}

pub(crate) mod rfc3339_opt {
    pub fn serialize<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&super::format_time(*v)),
            None => s.serialize_none(),
        }
    }
}

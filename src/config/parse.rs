//! Values parsed from text: times, addresses, URLs, ABI files.

use std::path::Path;
use std::str::FromStr;

use alloy::json_abi::JsonAbi;
use alloy::primitives::Address;

/// Parses an RFC 3339 time into unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

/// Parses a 20-byte hex address; the message says what was expected.
pub fn parse_address(s: &str) -> Result<Address, String> {
    Address::from_str(s.trim())
        .map_err(|_| format!("expected a 20-byte hex address like 0x1f98…f984, found `{s}`"))
}

/// Reads a JSON ABI: a plain array, or a Hardhat/Foundry artifact with an `abi` field.
pub fn read_abi(path: &Path) -> Result<JsonAbi, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read ABI file {}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "ABI file {} is not valid JSON (truncated?): {e}",
            path.display()
        )
    })?;
    let abi = match value {
        serde_json::Value::Array(_) => value,
        serde_json::Value::Object(mut o) => o.remove("abi").ok_or_else(|| {
            format!(
                "ABI file {} is an object without an `abi` field; expected a JSON ABI array or a Hardhat/Foundry artifact",
                path.display()
            )
        })?,
        _ => {
            return Err(format!(
                "ABI file {} is not a JSON ABI array or artifact",
                path.display()
            ));
        }
    };
    serde_json::from_value(abi)
        .map_err(|e| format!("ABI file {} is not a valid ABI: {e}", path.display()))
}

/// True for an `http(s)://host…` URL without spaces, controls or quotes:
/// a link for people, or a URL to fetch.
pub(super) fn is_web_url(url: &str) -> bool {
    ["https://", "http://"].iter().any(|scheme| {
        url.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    }) && !url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>'))
}

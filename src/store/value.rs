//! One value of a row to insert, borrowed: what both backends' bulk
//! inserts bind. A NULL keeps its column's type: PostgreSQL wants a typed
//! parameter even for a missing value.

/// A value bound to one parameter.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) enum Value<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Bool(bool),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(Some(v))
    }
}

impl<'a> From<Option<&'a String>> for Value<'a> {
    fn from(v: Option<&'a String>) -> Self {
        Value::Text(v.map(String::as_str))
    }
}

/// A table's single-row INSERT, without its VALUES: each backend adds the
/// parameters its way (one statement per row, or many rows per statement).
#[derive(Debug)]
pub(in crate::store) struct Table {
    /// `INSERT INTO t (a, b, c)`.
    pub head: &'static str,
    /// How many columns `head` names.
    pub columns: usize,
    /// What follows the VALUES: a conflict clause, or nothing.
    pub tail: &'static str,
    /// Names the insert in errors.
    pub what: &'static str,
}

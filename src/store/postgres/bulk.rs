//! Many rows in one statement: each column bound as one array and the rows
//! made by `UNNEST` (`INSERT INTO t (…) SELECT * FROM UNNEST($1::bigint[],
//! $2::text[], …)`). Binding a parameter per value costs PostgreSQL a
//! parse of thousands of parameters per statement; a catch-up writes
//! thousands of rows a commit.

use sqlx::PgConnection;

use crate::store::error::{Result, StoreError, q};
use crate::store::value::{Table, Value};

/// One column's values, typed as its first row's.
enum Column<'v> {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<&'v str>>),
    Bool(Vec<bool>),
}

impl<'v> Column<'v> {
    fn of(first: &Value<'v>, rows: usize) -> Self {
        match first {
            Value::Int(_) => Column::Int(Vec::with_capacity(rows)),
            Value::Text(_) => Column::Text(Vec::with_capacity(rows)),
            Value::Bool(_) => Column::Bool(Vec::with_capacity(rows)),
        }
    }

    /// Adds `v`; false when it is not of the column's kind.
    fn push(&mut self, v: Value<'v>) -> bool {
        match (self, v) {
            (Column::Int(c), Value::Int(n)) => c.push(n),
            (Column::Text(c), Value::Text(t)) => c.push(t),
            (Column::Bool(c), Value::Bool(b)) => c.push(b),
            _ => return false,
        }
        true
    }

    fn array_type(&self) -> &'static str {
        match self {
            Column::Int(_) => "bigint[]",
            Column::Text(_) => "text[]",
            Column::Bool(_) => "boolean[]",
        }
    }
}

/// Inserts `rows` into `table`, in one statement.
pub(in crate::store) async fn insert_all<'v, const N: usize>(
    conn: &mut PgConnection,
    table: &Table,
    rows: impl IntoIterator<Item = [Value<'v>; N]>,
) -> Result<()> {
    debug_assert_eq!(table.columns, N, "{}", table.what);
    let rows: Vec<[Value<'v>; N]> = rows.into_iter().collect();
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let mut columns: Vec<Column> = first.iter().map(|v| Column::of(v, rows.len())).collect();
    for row in &rows {
        for (column, v) in columns.iter_mut().zip(row) {
            if !column.push(*v) {
                return Err(StoreError::Corrupt {
                    what: table.what,
                    value: "a column with values of two kinds".into(),
                });
            }
        }
    }
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", i + 1, c.array_type()))
        .collect();
    let sql = format!(
        "{} SELECT * FROM UNNEST({}){}",
        table.head,
        arrays.join(", "),
        table.tail
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for column in columns {
        query = match column {
            Column::Int(v) => query.bind(v),
            Column::Text(v) => query.bind(v),
            Column::Bool(v) => query.bind(v),
        };
    }
    query.execute(&mut *conn).await.map_err(q(table.what))?;
    Ok(())
}

/// Inserts `rows` into `table` one by one; for each, whether it was
/// inserted (`false`: the conflict clause skipped it).
pub(in crate::store) async fn insert_each<'v, const N: usize>(
    conn: &mut PgConnection,
    table: &Table,
    rows: impl IntoIterator<Item = [Value<'v>; N]>,
) -> Result<Vec<bool>> {
    let params: Vec<String> = (1..=N).map(|i| format!("${i}")).collect();
    let sql = format!(
        "{} VALUES ({}){}",
        table.head,
        params.join(", "),
        table.tail
    );
    let mut added = Vec::new();
    for row in rows {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for v in row {
            query = match v {
                Value::Int(n) => query.bind(n),
                Value::Text(s) => query.bind(s),
                Value::Bool(x) => query.bind(x),
            };
        }
        let done = query.execute(&mut *conn).await.map_err(q(table.what))?;
        added.push(done.rows_affected() == 1);
    }
    Ok(added)
}

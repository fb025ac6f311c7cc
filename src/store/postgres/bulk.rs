//! Many rows in few statements: multi-row INSERTs, each at most
//! [`ROWS_PER_STATEMENT`] rows (PostgreSQL takes up to 65,535 parameters).

use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::store::error::{Result, q};
use crate::store::value::{Table, Value};

const ROWS_PER_STATEMENT: usize = 1_000;

/// Inserts `rows` into `table`.
pub(in crate::store) async fn insert_all<'v, const N: usize>(
    conn: &mut PgConnection,
    table: &Table,
    rows: impl IntoIterator<Item = [Value<'v>; N]>,
) -> Result<()> {
    debug_assert_eq!(table.columns, N, "{}", table.what);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut sql = QueryBuilder::<Postgres>::new(table.head);
        sql.push(" ");
        sql.push_values(rows.by_ref().take(ROWS_PER_STATEMENT), |mut b, row| {
            for v in row {
                match v {
                    Value::Int(n) => b.push_bind(n),
                    Value::Text(s) => b.push_bind(s),
                    Value::Bool(x) => b.push_bind(x),
                };
            }
        });
        sql.push(table.tail);
        sql.build()
            .execute(&mut *conn)
            .await
            .map_err(q(table.what))?;
    }
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

//! An error as one line with its sources, for logs, `/readyz` and stored
//! replies: `store query failed: commit: database is locked`.

/// `e` and each of its sources, joined with `: `. A source whose text the
/// line already ends with is not repeated (sqlx's and lettre's texts
/// often end with their source's).
pub fn with_sources(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle: inner")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn sources_are_joined_and_a_repeated_tail_is_said_once() {
        let e = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(with_sources(&e), "outer: middle: inner");
    }
}

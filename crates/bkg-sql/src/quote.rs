//! Identifiers and string literals written into SQL text, in one place.

/// `name` as a quoted SQL identifier: `"name"`, inner double quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `s` as a SQL string literal: `'s'`, inner single quotes doubled. Backslashes stay as they are
/// (standard_conforming_strings is on, as in PostgreSQL).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_are_doubled_and_nothing_else_changes() {
        assert_eq!(super::ident(r#"a"b c"#), r#""a""b c""#);
        assert_eq!(super::literal(r"it's a \n"), r"'it''s a \n'");
        assert_eq!(super::literal(""), "''");
    }
}

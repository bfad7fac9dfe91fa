//! SQL text as tokens with their byte positions, for the few statements the parser does not
//! know and that are rewritten or read by hand (`CREATE USER`, role grants, publications).

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};

/// A token other than whitespace and comments, with the byte range of `sql` it came from.
#[derive(Debug, Clone)]
pub(crate) struct Tok {
    pub token: Token,
    pub start: usize,
    pub end: usize,
}

impl Tok {
    /// The keyword of a word token (`Keyword::NoKeyword` for other words; `None` for non-words).
    pub fn keyword(&self) -> Option<Keyword> {
        match &self.token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
            _ => None,
        }
    }

    /// True for an unquoted word spelled `word` (any case).
    pub fn is_word(&self, word: &str) -> bool {
        matches!(&self.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }
}

/// The significant tokens of `sql`; `None` when it does not tokenize (the parser then reports
/// the error).
pub(crate) fn significant(sql: &str) -> Option<Vec<Tok>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().ok()?;
    let mut line_starts = vec![0usize];
    for (i, c) in sql.char_indices() {
        if c == '\n' {
            line_starts.push(i + 1);
        }
    }
    // Locations are 1-based (line, character); the end location points past the token.
    let offset = |loc: &Location| -> Option<usize> {
        let start = *line_starts.get((loc.line as usize).checked_sub(1)?)?;
        let col = (loc.column as usize).checked_sub(1)?;
        match sql[start..].char_indices().nth(col) {
            Some((i, _)) => Some(start + i),
            None => Some(sql.len()),
        }
    };
    let mut out = Vec::new();
    for t in tokens {
        if matches!(t.token, Token::Whitespace(_) | Token::EOF) {
            continue;
        }
        out.push(Tok { start: offset(&t.span.start)?, end: offset(&t.span.end)?, token: t.token });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_byte_ranges_of_the_text() {
        let sql = "CREATE  PUBLICATION \"Pé\"\n  FOR TABLE a;-- c\nDROP x";
        let toks = significant(sql).unwrap();
        let texts: Vec<&str> = toks.iter().map(|t| &sql[t.start..t.end]).collect();
        assert_eq!(texts, ["CREATE", "PUBLICATION", "\"Pé\"", "FOR", "TABLE", "a", ";", "DROP", "x"]);
        assert!(toks[1].is_word("publication") && !toks[2].is_word("pé"));
        assert_eq!(toks[0].keyword(), Some(Keyword::CREATE));
    }
}

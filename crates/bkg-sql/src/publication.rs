//! Publications: `CREATE PUBLICATION`, `ALTER PUBLICATION`, `DROP PUBLICATION`, as in
//! PostgreSQL 15, deciding which tables' committed changes the realtime door emits.
//!
//! The parser does not know these statements, so [`rewrite`] replaces each one in a SQL text by
//! `CALL pg_catalog.bkg_publication('<the statement>')` before parsing (on tokens: literals and
//! comments are never touched), and [`execute`] reads the statement back by hand. Calling that
//! procedure directly is the same statement with the same checks.
//!
//! Privileges as in PostgreSQL: `FOR ALL TABLES` and `FOR TABLES IN SCHEMA` need a superuser,
//! adding a table needs its owner, altering or dropping a publication needs the publication's
//! owner. Row filters (`WHERE`) and column lists are refused (0A000).

use std::collections::BTreeSet;

use bkg_kernel::{AclObject, Catalog, PublicationDef, PublishKinds};
use datafusion::sql::sqlparser::ast::{self, Ident, ObjectName, Statement};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::SqlState;
use crate::ddl::resolve_table;
use crate::error::{SqlError, SqlResult};
use crate::session::{Output, Session};
use crate::tokens::{Tok, significant};

/// The procedure a publication statement is rewritten into.
const PROCEDURE: &str = "bkg_publication";

/// The publication every realtime client expects to exist (empty until tables are added).
pub const DEFAULT_PUBLICATION: &str = "supabase_realtime";

/// `sql` with every publication statement replaced by a call of the procedure; `None` when it
/// has none.
pub fn rewrite(sql: &str) -> Option<String> {
    static HINT: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"(?i)\bpublication\b").expect("valid regex"));
    if !HINT.is_match(sql) {
        return None;
    }
    let toks = significant(sql)?;
    let mut edits: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let end = toks[i..].iter().position(|t| t.token == Token::SemiColon).map_or(toks.len(), |p| i + p);
        let stmt = &toks[i..end];
        if stmt.len() >= 2
            && matches!(stmt[0].keyword(), Some(Keyword::CREATE | Keyword::ALTER | Keyword::DROP))
            && stmt[1].is_word("publication")
        {
            edits.push((stmt[0].start, stmt[stmt.len() - 1].end));
        }
        i = end + 1;
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = sql.to_string();
    for (start, end) in edits.into_iter().rev() {
        let call = format!("CALL pg_catalog.{PROCEDURE}('{}')", sql[start..end].replace('\'', "''"));
        out.replace_range(start..end, &call);
    }
    Some(out)
}

/// True for the call [`rewrite`] makes.
pub fn is_publication_statement(stmt: &Statement) -> bool {
    statement_text(stmt).is_some()
}

fn statement_text(stmt: &Statement) -> Option<String> {
    let Statement::Call(f) = stmt else { return None };
    let parts: Vec<String> = f.name.0.iter().filter_map(|p| p.as_ident().map(|i| i.value.to_lowercase())).collect();
    if !matches!(parts.as_slice(), [p] | [_, p] if p == PROCEDURE) || (parts.len() == 2 && parts[0] != "pg_catalog") {
        return None;
    }
    let ast::FunctionArguments::List(list) = &f.args else { return None };
    match list.args.as_slice() {
        [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v)))] => match &v.value {
            ast::Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// What a publication statement asks for.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    Create { name: String, all_tables: bool, objects: Vec<Object>, publish: Option<PublishKinds> },
    Alter { name: String, action: AlterAction },
    Drop { names: Vec<String>, if_exists: bool },
}

#[derive(Debug, Clone, PartialEq)]
enum AlterAction {
    Add(Vec<Object>),
    Set(Vec<Object>),
    Remove(Vec<Object>),
    Options(PublishKinds),
    Owner(ast::Owner),
    Rename(String),
}

/// A member named in a statement: a table or a schema.
#[derive(Debug, Clone, PartialEq)]
enum Object {
    Table(ObjectName),
    Schema(Option<String>),
}

/// Runs a publication statement (the call [`rewrite`] made).
pub fn execute(session: &mut Session, stmt: Statement) -> SqlResult<Output> {
    let text = statement_text(&stmt).ok_or_else(|| SqlError::internal("not a publication statement"))?;
    let command = parse(&text)?;
    let tag = match &command {
        Command::Create { .. } => "CREATE PUBLICATION",
        Command::Alter { .. } => "ALTER PUBLICATION",
        Command::Drop { .. } => "DROP PUBLICATION",
    };
    match command {
        Command::Create { name, all_tables, objects, publish } => {
            if (all_tables || objects.iter().any(|o| matches!(o, Object::Schema(_)))) && !session.is_superuser() {
                let what = if all_tables { "FOR ALL TABLES" } else { "FOR TABLES IN SCHEMA" };
                return Err(denied(format!("must be superuser to create {what} publication")));
            }
            let (tables, schemas) = members(session, &objects)?;
            let def = PublicationDef {
                id: 0,
                name,
                owner: session.role,
                all_tables,
                tables,
                schemas,
                publish: publish.unwrap_or_default(),
            };
            session.with_txn(|t| Ok(t.catalog_mut().create_publication(def)?))?;
        }
        Command::Alter { name, action } => alter(session, &name, action)?,
        Command::Drop { names, if_exists } => {
            for name in names {
                if let Some(p) = session.with_txn(|t| Ok(t.catalog().publication(&name).cloned()))? {
                    require_owner(session, &p)?;
                }
                session.with_txn(|t| Ok(t.catalog_mut().drop_publication(&name, if_exists)?))?;
            }
        }
    }
    Ok(Output::command(tag))
}

fn alter(session: &mut Session, name: &str, action: AlterAction) -> SqlResult<()> {
    let mut def = session.with_txn(|t| {
        t.catalog()
            .publication(name)
            .cloned()
            .ok_or_else(|| SqlError::new(SqlState::UndefinedObject, format!("publication \"{name}\" does not exist")))
    })?;
    require_owner(session, &def)?;
    let changes_members = matches!(action, AlterAction::Add(_) | AlterAction::Set(_) | AlterAction::Remove(_));
    if changes_members && def.all_tables {
        return Err(SqlError::new(
            SqlState::ObjectNotInPrerequisiteState,
            format!("publication \"{name}\" is defined as FOR ALL TABLES"),
        )
        .with_detail("Tables cannot be added to or dropped from FOR ALL TABLES publications."));
    }
    if let AlterAction::Add(o) | AlterAction::Set(o) = &action
        && o.iter().any(|o| matches!(o, Object::Schema(_)))
        && !session.is_superuser()
    {
        return Err(denied("must be superuser to add or set schemas"));
    }
    match action {
        AlterAction::Add(objects) => {
            let (tables, schemas) = members(session, &objects)?;
            let cat = session.catalog_view();
            if let Some(t) = tables.iter().find(|t| def.tables.contains(t)) {
                return Err(SqlError::new(
                    SqlState::DuplicateObject,
                    format!("relation \"{}\" is already member of publication \"{name}\"", relname(&cat, *t)),
                ));
            }
            if let Some(s) = schemas.iter().find(|s| def.schemas.contains(*s)) {
                return Err(SqlError::new(
                    SqlState::DuplicateObject,
                    format!("schema \"{s}\" is already member of publication \"{name}\""),
                ));
            }
            def.tables.extend(tables);
            def.schemas.extend(schemas);
        }
        AlterAction::Set(objects) => {
            let (tables, schemas) = members(session, &objects)?;
            def.tables = tables;
            def.schemas = schemas;
        }
        AlterAction::Remove(objects) => {
            let (tables, schemas) = members(session, &objects)?;
            let cat = session.catalog_view();
            for t in tables {
                if !def.tables.remove(&t) {
                    return Err(SqlError::new(
                        SqlState::UndefinedObject,
                        format!("relation \"{}\" is not part of the publication", relname(&cat, t)),
                    ));
                }
            }
            for s in schemas {
                if !def.schemas.remove(&s) {
                    return Err(SqlError::new(
                        SqlState::UndefinedObject,
                        format!("tables from schema \"{s}\" are not part of the publication"),
                    ));
                }
            }
        }
        AlterAction::Options(publish) => def.publish = publish,
        AlterAction::Owner(owner) => {
            def.owner = match owner {
                ast::Owner::Ident(i) => {
                    let role = crate::ddl::ident_name(&i);
                    let cat = session.catalog_view();
                    cat.find_role(&role)
                        .ok_or_else(|| {
                            SqlError::new(SqlState::UndefinedObject, format!("role \"{role}\" does not exist"))
                        })?
                        .oid
                }
                ast::Owner::CurrentRole | ast::Owner::CurrentUser => session.role,
                ast::Owner::SessionUser => session.session_role,
            };
            if !session.is_superuser() && (def.all_tables || !def.schemas.is_empty()) {
                return Err(denied(format!("permission denied to change owner of publication \"{name}\"")).with_hint(
                    "The owner of a FOR ALL TABLES or FOR TABLES IN SCHEMA publication must be a superuser.",
                ));
            }
        }
        AlterAction::Rename(to) => def.name = to,
    }
    session.with_txn(|t| Ok(t.catalog_mut().replace_publication(name, def)?))
}

/// The tables and schemas `objects` name, checked: tables exist, are tables, and are owned by
/// the current role; schemas exist.
fn members(session: &Session, objects: &[Object]) -> SqlResult<(BTreeSet<u64>, BTreeSet<String>)> {
    let (mut tables, mut schemas) = (BTreeSet::new(), BTreeSet::new());
    for o in objects {
        match o {
            Object::Table(name) => {
                let id = resolve_table(session, name).map_err(|e| {
                    if e.code == SqlState::WrongObjectType {
                        SqlError::new(
                            SqlState::WrongObjectType,
                            format!("cannot add relation \"{name}\" to publication"),
                        )
                        .with_detail("This operation is not supported for views.")
                    } else {
                        e
                    }
                })?;
                session.require_owner(AclObject::Relation(id))?;
                tables.insert(id);
            }
            Object::Schema(name) => {
                let name = name.clone().unwrap_or_else(|| session.current_schema());
                if name == crate::pg_catalog::PG_CATALOG || name == "information_schema" {
                    return Err(SqlError::new(
                        SqlState::InvalidParameterValue,
                        format!("cannot add schema \"{name}\" to publication"),
                    )
                    .with_detail("This operation is not supported for system schemas."));
                }
                if !session.catalog_view().schemas.contains_key(&name) {
                    return Err(SqlError::new(
                        SqlState::InvalidSchemaName,
                        format!("schema \"{name}\" does not exist"),
                    ));
                }
                schemas.insert(name);
            }
        }
    }
    Ok((tables, schemas))
}

fn require_owner(session: &Session, def: &PublicationDef) -> SqlResult<()> {
    let cat = session.catalog_view();
    if session.is_superuser() || cat.member_closure(session.role).contains(&def.owner) {
        return Ok(());
    }
    Err(denied(format!("must be owner of publication {}", def.name)))
}

fn relname(cat: &Catalog, id: u64) -> String {
    cat.table(id).map(|t| t.name.clone()).unwrap_or_else(|| id.to_string())
}

fn denied(message: impl Into<String>) -> SqlError {
    SqlError::new(SqlState::InsufficientPrivilege, message)
}

/// Reads one publication statement.
fn parse(text: &str) -> SqlResult<Command> {
    let toks = significant(text).ok_or_else(|| SqlError::syntax("publication statement does not tokenize"))?;
    let mut p = Parser { toks: &toks, pos: 0, text };
    let verb = p.next_keyword()?;
    p.expect_word("publication")?;
    let command = match verb {
        Keyword::CREATE => {
            let name = p.ident()?;
            let (mut all_tables, mut objects, mut publish) = (false, vec![], None);
            if p.eat_keyword(Keyword::FOR) {
                if p.eat_keyword(Keyword::ALL) {
                    p.expect_word("tables")?;
                    all_tables = true;
                } else {
                    objects = p.objects()?;
                }
            }
            if p.eat_keyword(Keyword::WITH) {
                publish = Some(p.options()?);
            }
            Command::Create { name, all_tables, objects, publish }
        }
        Keyword::ALTER => {
            let name = p.ident()?;
            let action = if p.eat_keyword(Keyword::ADD) {
                AlterAction::Add(p.objects()?)
            } else if p.eat_keyword(Keyword::DROP) {
                AlterAction::Remove(p.objects()?)
            } else if p.eat_keyword(Keyword::SET) {
                if p.peek_is(&Token::LParen) {
                    AlterAction::Options(p.options()?)
                } else {
                    AlterAction::Set(p.objects()?)
                }
            } else if p.eat_keyword(Keyword::OWNER) {
                p.expect_keyword(Keyword::TO)?;
                AlterAction::Owner(match p.next_keyword_or_ident()? {
                    (Some(Keyword::CURRENT_ROLE), _) => ast::Owner::CurrentRole,
                    (Some(Keyword::CURRENT_USER), _) => ast::Owner::CurrentUser,
                    (Some(Keyword::SESSION_USER), _) => ast::Owner::SessionUser,
                    (_, ident) => ast::Owner::Ident(ident),
                })
            } else if p.eat_keyword(Keyword::RENAME) {
                p.expect_keyword(Keyword::TO)?;
                AlterAction::Rename(p.ident()?)
            } else {
                return Err(p.error("ADD, DROP, SET, OWNER TO or RENAME TO"));
            };
            Command::Alter { name, action }
        }
        Keyword::DROP => {
            let if_exists = p.eat_keyword(Keyword::IF);
            if if_exists {
                p.expect_keyword(Keyword::EXISTS)?;
            }
            let mut names = vec![p.ident()?];
            while p.eat(&Token::Comma) {
                names.push(p.ident()?);
            }
            // CASCADE and RESTRICT mean the same here: nothing depends on a publication.
            let _ = p.eat_keyword(Keyword::CASCADE) || p.eat_keyword(Keyword::RESTRICT);
            Command::Drop { names, if_exists }
        }
        _ => return Err(SqlError::internal("not a publication statement")),
    };
    if p.pos < toks.len() {
        return Err(p.error("end of statement"));
    }
    Ok(command)
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self, expected: &str) -> SqlError {
        let found = self.toks.get(self.pos).map_or("end of input", |t| &self.text[t.start..t.end]);
        SqlError::syntax(format!("syntax error at or near \"{found}\": expected {expected}"))
    }

    fn peek_is(&self, token: &Token) -> bool {
        self.toks.get(self.pos).is_some_and(|t| &t.token == token)
    }

    fn eat(&mut self, token: &Token) -> bool {
        let yes = self.peek_is(token);
        self.pos += usize::from(yes);
        yes
    }

    fn eat_keyword(&mut self, k: Keyword) -> bool {
        let yes = self.toks.get(self.pos).and_then(Tok::keyword) == Some(k);
        self.pos += usize::from(yes);
        yes
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let yes = self.toks.get(self.pos).is_some_and(|t| t.is_word(word));
        self.pos += usize::from(yes);
        yes
    }

    fn expect_keyword(&mut self, k: Keyword) -> SqlResult<()> {
        if self.eat_keyword(k) { Ok(()) } else { Err(self.error(&format!("{k:?}"))) }
    }

    fn expect_word(&mut self, word: &str) -> SqlResult<()> {
        if self.eat_word(word) { Ok(()) } else { Err(self.error(&word.to_uppercase())) }
    }

    fn next_keyword(&mut self) -> SqlResult<Keyword> {
        let k = self.toks.get(self.pos).and_then(Tok::keyword).ok_or_else(|| self.error("a keyword"))?;
        self.pos += 1;
        Ok(k)
    }

    /// The next word as (its keyword when unquoted, the identifier).
    fn next_keyword_or_ident(&mut self) -> SqlResult<(Option<Keyword>, Ident)> {
        match self.toks.get(self.pos).map(|t| &t.token) {
            Some(Token::Word(w)) => {
                self.pos += 1;
                let keyword = w.quote_style.is_none().then_some(w.keyword);
                let mut ident = Ident::new(w.value.clone());
                ident.quote_style = w.quote_style;
                Ok((keyword, ident))
            }
            _ => Err(self.error("a name")),
        }
    }

    /// A name as PostgreSQL folds it (unquoted: lower case).
    fn ident(&mut self) -> SqlResult<String> {
        let (_, i) = self.next_keyword_or_ident()?;
        Ok(crate::ddl::ident_name(&i))
    }

    fn qualified(&mut self) -> SqlResult<ObjectName> {
        let mut parts = vec![self.next_keyword_or_ident()?.1];
        while self.eat(&Token::Period) {
            parts.push(self.next_keyword_or_ident()?.1);
        }
        Ok(ObjectName::from(parts))
    }

    /// `TABLE [ONLY] t [*] [, ...]` and `TABLES IN SCHEMA s [, ...]`, in any mix.
    fn objects(&mut self) -> SqlResult<Vec<Object>> {
        let mut out = Vec::new();
        let mut kind = None;
        loop {
            if self.eat_keyword(Keyword::TABLE) {
                kind = Some(true);
            } else if self.eat_word("tables") {
                self.expect_keyword(Keyword::IN)?;
                self.expect_keyword(Keyword::SCHEMA)?;
                kind = Some(false);
            } else if kind.is_none() {
                return Err(self.error("TABLE or TABLES IN SCHEMA"));
            }
            match kind {
                Some(true) => {
                    let _ = self.eat_keyword(Keyword::ONLY);
                    out.push(Object::Table(self.qualified()?));
                    let _ = self.eat(&Token::Mul);
                    if self.peek_is(&Token::LParen) {
                        return Err(SqlError::unsupported("column lists in publications"));
                    }
                    if self.toks.get(self.pos).and_then(Tok::keyword) == Some(Keyword::WHERE) {
                        return Err(SqlError::unsupported("row filters (WHERE) in publications"));
                    }
                }
                _ => {
                    if self.eat_keyword(Keyword::CURRENT_SCHEMA) {
                        out.push(Object::Schema(None));
                    } else {
                        out.push(Object::Schema(Some(self.ident()?)));
                    }
                }
            }
            if !self.eat(&Token::Comma) {
                return Ok(out);
            }
        }
    }

    /// `( publish = 'insert, update', publish_via_partition_root = false )`.
    fn options(&mut self) -> SqlResult<PublishKinds> {
        if !self.eat(&Token::LParen) {
            return Err(self.error("("));
        }
        let mut publish = PublishKinds::default();
        loop {
            let name = self.ident()?;
            let value = if self.eat(&Token::Eq) {
                match self.toks.get(self.pos).map(|t| &t.token) {
                    Some(Token::SingleQuotedString(s)) => s.clone(),
                    Some(Token::Word(w)) => w.value.clone(),
                    Some(Token::Number(n, _)) => n.clone(),
                    _ => return Err(self.error("a value")),
                }
            } else {
                return Err(self.error("="));
            };
            self.pos += 1;
            match name.as_str() {
                "publish" => publish = publish_kinds(&value)?,
                "publish_via_partition_root" => {
                    if !matches!(value.to_lowercase().as_str(), "false" | "off" | "0" | "true" | "on" | "1") {
                        return Err(SqlError::new(
                            SqlState::SyntaxError,
                            format!("publish_via_partition_root requires a Boolean value, not \"{value}\""),
                        ));
                    }
                }
                other => {
                    return Err(SqlError::new(
                        SqlState::SyntaxError,
                        format!("unrecognized publication parameter: \"{other}\""),
                    ));
                }
            }
            if self.eat(&Token::RParen) {
                return Ok(publish);
            }
            if !self.eat(&Token::Comma) {
                return Err(self.error(", or )"));
            }
        }
    }
}

fn publish_kinds(value: &str) -> SqlResult<PublishKinds> {
    let mut k = PublishKinds { insert: false, update: false, delete: false, truncate: false };
    for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word.to_lowercase().as_str() {
            "insert" => k.insert = true,
            "update" => k.update = true,
            "delete" => k.delete = true,
            "truncate" => k.truncate = true,
            _ => {
                return Err(SqlError::new(
                    SqlState::SyntaxError,
                    format!("unrecognized \"publish\" value: \"{word}\""),
                ));
            }
        }
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_rewritten_on_tokens_only() {
        let sql = "create publication p for table a; SELECT 'create publication x'; -- drop publication y\n\
                   ALTER PUBLICATION \"Q\" ADD TABLE b, c";
        let out = rewrite(sql).unwrap();
        assert_eq!(
            out,
            "CALL pg_catalog.bkg_publication('create publication p for table a'); SELECT 'create publication x'; \
             -- drop publication y\nCALL pg_catalog.bkg_publication('ALTER PUBLICATION \"Q\" ADD TABLE b, c')"
        );
        let stmts = Session::parse(&out).unwrap();
        assert!(is_publication_statement(&stmts[0]) && !is_publication_statement(&stmts[1]));
        assert_eq!(statement_text(&stmts[2]).unwrap(), "ALTER PUBLICATION \"Q\" ADD TABLE b, c");
        assert!(rewrite("SELECT publication FROM t").is_none());
    }

    #[test]
    fn the_grammar_of_postgresql_15() {
        let name = |n: &str| Object::Table(ObjectName::from(vec![Ident::new(n)]));
        assert_eq!(
            parse("CREATE PUBLICATION p FOR TABLE a, ONLY b *, TABLES IN SCHEMA s, CURRENT_SCHEMA").unwrap(),
            Command::Create {
                name: "p".into(),
                all_tables: false,
                objects: vec![name("a"), name("b"), Object::Schema(Some("s".into())), Object::Schema(None)],
                publish: None,
            }
        );
        let Command::Create { all_tables: true, publish: Some(k), .. } =
            parse("create publication \"P\" for all tables with (publish = 'insert,delete')").unwrap()
        else {
            panic!("FOR ALL TABLES WITH")
        };
        assert_eq!(k, PublishKinds { insert: true, update: false, delete: true, truncate: false });
        assert!(matches!(
            parse("ALTER PUBLICATION p SET (publish = '')").unwrap(),
            Command::Alter { action: AlterAction::Options(PublishKinds { insert: false, .. }), .. }
        ));
        assert!(matches!(
            parse("ALTER PUBLICATION p DROP TABLE x.y").unwrap(),
            Command::Alter { action: AlterAction::Remove(_), .. }
        ));
        assert_eq!(
            parse("DROP PUBLICATION IF EXISTS a, b CASCADE").unwrap(),
            Command::Drop { names: vec!["a".into(), "b".into()], if_exists: true }
        );
        let code = |sql: &str| parse(sql).unwrap_err().code;
        assert_eq!(code("CREATE PUBLICATION p FOR TABLE a (x)"), SqlState::FeatureNotSupported);
        assert_eq!(code("CREATE PUBLICATION p FOR TABLE a WHERE (x > 1)"), SqlState::FeatureNotSupported);
        assert_eq!(code("CREATE PUBLICATION p WITH (publish = 'upsert')"), SqlState::SyntaxError);
        assert_eq!(code("CREATE PUBLICATION p WITH (colour = 'red')"), SqlState::SyntaxError);
        assert_eq!(code("CREATE PUBLICATION p FOR a"), SqlState::SyntaxError);
        assert_eq!(code("ALTER PUBLICATION p FROB"), SqlState::SyntaxError);
        assert_eq!(code("DROP PUBLICATION p q"), SqlState::SyntaxError);
    }
}

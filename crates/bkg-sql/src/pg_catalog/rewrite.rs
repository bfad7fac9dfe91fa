//! The rewrite of PostgreSQL catalog idioms the planner does not know into plain SQL.

use super::*;

pub fn rewrite(stmt: &mut Statement, cat: &Catalog, current_schema: &str) -> crate::error::SqlResult<()> {
    let _ = ast::VisitMut::visit(stmt, &mut CatalogForms);
    let mut err = None;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        // A malformed array literal in a cast is an error, as in PostgreSQL.
        if let Expr::Cast { expr, data_type: ast::DataType::Array(_), .. } = e
            && let Err(x) = array_text_literal_checked(expr)
        {
            err = Some(x);
            return std::ops::ControlFlow::Break(());
        }
        rewrite_expr(e, cat, current_schema);
        std::ops::ControlFlow::<()>::Continue(())
    });
    if let Some(e) = err {
        return Err(e);
    }
    Ok(())
    // `pg_catalog.fn(...)` → `fn(...)` also for table functions and in FROM.
}

fn parse_expr(sql: &str) -> Option<Expr> {
    datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// Catalog forms beyond single expressions: `pg_partition_ancestors(rel)` in FROM (bkg-db has no
/// partitions, so a relation's only ancestor is itself) and `x::regclass` in a select list,
/// shown by name as PostgreSQL prints regclass values.
struct CatalogForms;

impl ast::VisitorMut for CatalogForms {
    type Break = ();

    fn pre_visit_table_factor(&mut self, tf: &mut ast::TableFactor) -> std::ops::ControlFlow<()> {
        // `pg_catalog.unnest(…)` and other qualified table functions.
        if let ast::TableFactor::Table { name, args: Some(_), alias, .. } = tf {
            strip_pg_catalog(name);
            // `unnest(a) x`: in PostgreSQL the alias also names the single output column.
            if name.to_string().eq_ignore_ascii_case("unnest")
                && let Some(a) = alias
                && a.columns.is_empty()
            {
                a.columns.push(ast::TableAliasColumnDef { name: a.name.clone(), data_type: None });
            }
        }
        if let ast::TableFactor::Table { name, args: Some(args), alias, .. } = tf
            && name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_partition_ancestors"))
            && let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))] = args.args.as_slice()
        {
            let alias = alias.as_ref().map(|a| a.to_string()).unwrap_or_else(|| "pg_partition_ancestors".into());
            let sql = format!("SELECT 1 FROM (SELECT CAST({arg} AS BIGINT) AS relid) AS {alias}");
            if let Ok(mut stmts) = crate::session::Session::parse(&sql)
                && let Some(Statement::Query(q)) = stmts.pop()
                && let ast::SetExpr::Select(sel) = *q.body
                && let Some(from) = sel.from.into_iter().next()
            {
                *tf = from.relation;
            }
        }
        std::ops::ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &mut ast::Query) -> std::ops::ControlFlow<()> {
        if let ast::SetExpr::Select(sel) = q.body.as_mut() {
            for item in sel.projection.iter_mut() {
                let (ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. }) = item else {
                    continue;
                };
                if let Expr::Cast { expr, data_type, .. } = e
                    && (matches!(data_type, ast::DataType::Regclass)
                        || matches!(data_type, ast::DataType::Custom(n, _) if n.to_string().to_lowercase().ends_with("regclass")))
                    && !matches!(expr.as_ref(), Expr::Value(_))
                    && let Some(call) = parse_expr(&format!("pg_regclass_name({expr})"))
                {
                    *e = call;
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// `SELECT … FROM unnest(x.reloptions)` (psql's `\d+`): bkg-db has no storage options, so the
/// array is always NULL and the (correlated, unsupported) subquery is empty.
fn unnests_unset_options(q: &ast::Query) -> bool {
    let ast::SetExpr::Select(sel) = q.body.as_ref() else { return false };
    let [from] = sel.from.as_slice() else { return false };
    let ast::TableFactor::Table { name, args: Some(args), .. } = &from.relation else { return false };
    if !name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("unnest")) {
        return false;
    }
    matches!(args.args.as_slice(), [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))]
        if matches!(e, Expr::CompoundIdentifier(parts) if parts.last().is_some_and(|p| ["reloptions", "attoptions"].contains(&p.value.to_lowercase().as_str())))
            || matches!(e, Expr::Identifier(p) if ["reloptions", "attoptions"].contains(&p.value.to_lowercase().as_str())))
}

/// `SELECT rolname FROM pg_roles WHERE oid = ANY (x) ...`: the expression `x`.
fn role_names_of_any(q: &ast::Query) -> Option<Expr> {
    let ast::SetExpr::Select(sel) = q.body.as_ref() else { return None };
    let [from] = sel.from.as_slice() else { return None };
    let ast::TableFactor::Table { name, .. } = &from.relation else { return None };
    if !name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("pg_roles")) {
        return None;
    }
    let [ast::SelectItem::UnnamedExpr(Expr::Identifier(col))] = sel.projection.as_slice() else { return None };
    if !col.value.eq_ignore_ascii_case("rolname") {
        return None;
    }
    match sel.selection.as_ref()? {
        Expr::AnyOp { left, compare_op: ast::BinaryOperator::Eq, right, .. } if matches!(left.as_ref(), Expr::Identifier(i) if i.value.eq_ignore_ascii_case("oid")) => {
            Some(right.as_ref().clone())
        }
        _ => None,
    }
}

fn strip_pg_catalog(name: &mut ast::ObjectName) {
    if name.0.len() == 2 && name.0[0].as_ident().is_some_and(|i| i.value.eq_ignore_ascii_case(PG_CATALOG)) {
        name.0.remove(0);
    }
}

/// `ARRAY(SELECT ...)` in a catalog query, as something the planner runs: role names from
/// `pg_roles`, an empty array over a catalog that is empty, else `array_agg` of the subquery.
fn array_subquery(q: &ast::Query, cat: &Catalog) -> Option<Expr> {
    // psql's `\d t` names a policy's roles with a correlated subquery.
    if let Some(oids) = role_names_of_any(q)
        && let Some(names) = parse_expr(&format!("string_to_array(bkg_role_names({oids}), ',')"))
    {
        return Some(names);
    }
    // Over a catalog table bkg-db keeps empty: an empty array, without planning the (often
    // correlated, nested) subquery.
    if provably_empty(q, cat).is_some() || unnests_unset_options(q) {
        return parse_expr("CAST(make_array() AS text[])");
    }
    let mut q = q.clone();
    if let ast::SetExpr::Select(sel) = q.body.as_mut()
        && sel.projection.len() == 1
        && let ast::SelectItem::UnnamedExpr(item) | ast::SelectItem::ExprWithAlias { expr: item, .. } =
            &sel.projection[0]
        && let Some(agg) = parse_expr(&format!("array_agg({item})"))
    {
        sel.projection[0] = ast::SelectItem::UnnamedExpr(agg);
        q.order_by = None;
        // ARRAY() of no rows is an empty array, not NULL.
        let sub = Expr::Subquery(Box::new(q));
        return Some(parse_expr(&format!("coalesce({sub}, make_array())")).unwrap_or(sub));
    }
    None
}

/// psql's `\d t` lists a publication's column list with `CASE WHEN pr.prattrs IS NOT NULL THEN
/// (subquery) ELSE NULL END`; bkg-db refuses column lists, so `prattrs` is always NULL and the
/// CASE is its ELSE.
fn without_column_list(e: &Expr) -> Option<Expr> {
    let Expr::Case { operand: None, conditions, else_result, .. } = e else { return None };
    let is_prattrs = |x: &Expr| match x {
        Expr::CompoundIdentifier(p) => p.last().is_some_and(|i| i.value.eq_ignore_ascii_case("prattrs")),
        Expr::Identifier(i) => i.value.eq_ignore_ascii_case("prattrs"),
        _ => false,
    };
    match conditions.as_slice() {
        [c] if matches!(&c.condition, Expr::IsNotNull(x) if is_prattrs(x)) => {
            Some(else_result.as_deref().cloned().unwrap_or(Expr::value(ast::Value::Null)))
        }
        _ => None,
    }
}

fn rewrite_expr(e: &mut Expr, cat: &Catalog, current_schema: &str) {
    crate::json::rewrite_operator(e);
    match e {
        Expr::Function(f) => {
            let n = f.name.0.len();
            if n == 2 && f.name.0[0].as_ident().is_some_and(|i| i.value.eq_ignore_ascii_case(PG_CATALOG)) {
                f.name.0.remove(0);
            }
            // ARRAY(SELECT x FROM ...) → (SELECT array_agg(x) FROM ...)
            if f.name.to_string().eq_ignore_ascii_case("array")
                && let ast::FunctionArguments::Subquery(q) = &f.args
                && let Some(new) = array_subquery(q, cat)
            {
                *e = new;
            }
        }
        Expr::Case { .. } => {
            if let Some(new) = without_column_list(e) {
                *e = new;
            }
        }
        Expr::BinaryOp { left, op, right } => {
            // `array_column = '{0}'`: an array literal in PostgreSQL's text form.
            if matches!(op, ast::BinaryOperator::Eq | ast::BinaryOperator::NotEq) {
                for side in [left.as_mut(), right.as_mut()] {
                    if let Some(arr) = array_literal(side) {
                        *side = arr;
                    }
                }
            }
            if let ast::BinaryOperator::PGCustomBinaryOperator(parts) = op {
                let sym = parts.last().cloned().unwrap_or_default();
                let new = match sym.as_str() {
                    "~" => Some(ast::BinaryOperator::PGRegexMatch),
                    "~*" => Some(ast::BinaryOperator::PGRegexIMatch),
                    "!~" => Some(ast::BinaryOperator::PGRegexNotMatch),
                    "!~*" => Some(ast::BinaryOperator::PGRegexNotIMatch),
                    "=" => Some(ast::BinaryOperator::Eq),
                    "<>" => Some(ast::BinaryOperator::NotEq),
                    "<" => Some(ast::BinaryOperator::Lt),
                    ">" => Some(ast::BinaryOperator::Gt),
                    "~~" => None,
                    _ => None,
                };
                if let Some(n) = new {
                    *op = n;
                }
            }
        }
        Expr::Subquery(q) => aggregate_catalog_subquery(q),
        Expr::Collate { expr, .. } => {
            let inner = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
            *e = inner;
        }
        Expr::Cast { data_type: ast::DataType::Array(_), .. } => array_cast(e),
        // uuid and json values are text here: the cast checks the text (22P02) and gives a
        // uuid its canonical form, as a uuid column stores it.
        Expr::Cast {
            expr,
            data_type: data_type @ (ast::DataType::Uuid | ast::DataType::JSON | ast::DataType::JSONB),
            ..
        } => {
            let f = if matches!(data_type, ast::DataType::Uuid) { "bkg_uuid_in" } else { "bkg_json_in" };
            let inner = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
            *e = call(f, vec![inner]);
        }
        Expr::Cast { expr, data_type, .. } => {
            let tname = match data_type {
                ast::DataType::Custom(n, _) => {
                    strip_pg_catalog(n);
                    n.to_string().to_lowercase()
                }
                ast::DataType::Regclass => "regclass".into(),
                _ => String::new(),
            };
            match tname.as_str() {
                "regclass" => {
                    // 'name'::regclass → the relation's oid.
                    if let Expr::Value(v) = expr.as_ref()
                        && let ast::Value::SingleQuotedString(name) = &v.value
                        && let Ok(oid) = name.trim().parse::<i64>()
                    {
                        // '16386'::regclass: an oid given as text.
                        *e = Expr::value(ast::Value::Number(oid.to_string(), false));
                    } else if let Expr::Value(v) = expr.as_ref()
                        && let ast::Value::SingleQuotedString(name) = &v.value
                    {
                        let (schema, rel) = match name.split_once('.') {
                            Some((s, r)) => (s.trim_matches('"').to_string(), r.trim_matches('"').to_string()),
                            None => (current_schema.to_string(), name.trim_matches('"').to_string()),
                        };
                        let oid = cat
                            .find_table(&schema, &rel)
                            .map(|t| t.id)
                            .or_else(|| cat.find_view(&schema, &rel).map(|v| v.id))
                            .or_else(|| cat.find_index(&schema, &rel).map(|(t, i)| cat.tables[&t].indexes[i].id))
                            .map(|x| x as i64)
                            .unwrap_or(0);
                        *e = Expr::value(ast::Value::Number(oid.to_string(), false));
                    } else {
                        let inner = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
                        *e = inner;
                    }
                }
                // 'json'::regtype is the type's oid; a column cast to regtype is shown by name.
                "regtype" => {
                    let inner = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
                    *e = match &inner {
                        Expr::Value(v) if matches!(v.value, ast::Value::SingleQuotedString(_)) => {
                            let ast::Value::SingleQuotedString(name) = &v.value else { unreachable!() };
                            Expr::value(ast::Value::Number(type_oid_by_name(name).unwrap_or(0).to_string(), false))
                        }
                        _ => call("format_type", vec![inner, Expr::value(ast::Value::Number("-1".into(), false))]),
                    };
                }
                "regproc" | "regprocedure" | "regnamespace" | "regrole" | "oid" => {
                    let inner = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
                    *e = Expr::Cast {
                        kind: ast::CastKind::DoubleColon,
                        expr: Box::new(inner),
                        data_type: ast::DataType::BigInt(None),
                        array: false,
                        format: None,
                    };
                }
                "text" | "name" | "char" | "\"char\"" => {
                    *data_type = ast::DataType::Text;
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// The oid of a built-in type given by name (`int4`, `integer`, `json`, `_text`, ...).
/// Catalog tables that hold no rows in bkg-db (no triggers, statistics objects or inheritance).
const ALWAYS_EMPTY: &[&str] = &["pg_trigger", "pg_statistic_ext", "pg_inherits"];

/// What is known to be empty in `cat`: catalog tables without rows, and (table, boolean column)
/// pairs false in every row of the table.
struct Emptiness {
    tables: Vec<&'static str>,
    false_columns: Vec<(&'static str, &'static str)>,
}

impl Emptiness {
    fn of(cat: &Catalog) -> Emptiness {
        let mut tables = ALWAYS_EMPTY.to_vec();
        let pubs = &cat.publications;
        if pubs.is_empty() {
            tables.push("pg_publication");
        }
        if pubs.values().all(|p| p.tables.is_empty()) {
            tables.push("pg_publication_rel");
        }
        if pubs.values().all(|p| p.schemas.is_empty()) {
            tables.push("pg_publication_namespace");
        }
        let mut false_columns = vec![];
        if !pubs.values().any(|p| p.all_tables) {
            false_columns.push(("pg_publication", "puballtables"));
        }
        Emptiness { tables, false_columns }
    }

    /// The catalog table a FROM item reads (`None` for anything else).
    fn catalog_table(&self, f: &ast::TableFactor) -> Option<String> {
        let ast::TableFactor::Table { name, .. } = f else { return None };
        let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident().map(|i| i.value.to_lowercase())).collect();
        match parts.as_slice() {
            [t] => Some(t.clone()),
            [s, t] if s == PG_CATALOG => Some(t.clone()),
            _ => None,
        }
    }

    fn is_empty_table(&self, f: &ast::TableFactor) -> bool {
        self.catalog_table(f).is_some_and(|t| self.tables.contains(&t.as_str()))
    }

    /// True when the WHERE clause of `sel` requires (as a top-level conjunct) a boolean column of
    /// `f` that is false in every row.
    fn filtered_empty(&self, f: &ast::TableFactor, sel: &ast::Select) -> bool {
        let Some(table) = self.catalog_table(f) else { return false };
        let alias = match f {
            ast::TableFactor::Table { alias: Some(a), .. } => a.name.value.to_lowercase(),
            _ => table.clone(),
        };
        let Some(selection) = &sel.selection else { return false };
        let mut conjuncts = Vec::new();
        split_and(selection.clone(), &mut conjuncts);
        conjuncts.iter().any(|c| {
            let column = match c {
                Expr::Identifier(i) => i.value.to_lowercase(),
                Expr::CompoundIdentifier(p) if p.len() == 2 && p[0].value.to_lowercase() == alias => {
                    p[1].value.to_lowercase()
                }
                _ => return false,
            };
            self.false_columns.iter().any(|(t, col)| *t == table && *col == column)
        })
    }
}

/// The output column names of `q` if it provably returns no rows because every branch reads a
/// catalog table that is empty in `cat` (or whose rows its WHERE clause rules out, see
/// [`Emptiness`]) in a position that empties the result (the base of a FROM item without
/// RIGHT/FULL joins, or an inner join), without aggregates. Clients' catalog queries about
/// features bkg-db lacks or that are not in use (psql's `\d` asks for policies, statistics
/// objects and publications) then answer without planning expressions the planner cannot
/// handle.
pub fn provably_empty(q: &ast::Query, cat: &Catalog) -> Option<Vec<String>> {
    let known = Emptiness::of(cat);
    fn has_aggregate(sel: &ast::Select) -> bool {
        // Aggregates of the select itself, not of subqueries inside it.
        struct Finder {
            depth: usize,
            found: bool,
        }
        impl ast::Visitor for Finder {
            type Break = ();
            fn pre_visit_query(&mut self, _q: &ast::Query) -> std::ops::ControlFlow<()> {
                self.depth += 1;
                std::ops::ControlFlow::Continue(())
            }
            fn post_visit_query(&mut self, _q: &ast::Query) -> std::ops::ControlFlow<()> {
                self.depth -= 1;
                std::ops::ControlFlow::Continue(())
            }
            fn pre_visit_expr(&mut self, e: &Expr) -> std::ops::ControlFlow<()> {
                self.found |= self.depth == 0 && is_aggregate(e);
                std::ops::ControlFlow::Continue(())
            }
        }
        let mut finder = Finder { depth: 0, found: false };
        let _ = ast::Visit::visit(&sel.projection, &mut finder);
        finder.found
            || sel.having.is_some()
            || !matches!(&sel.group_by, ast::GroupByExpr::Expressions(v, _) if v.is_empty())
    }
    fn empty_body(b: &ast::SetExpr, known: &Emptiness) -> bool {
        let is_empty_table = |f: &ast::TableFactor| known.is_empty_table(f);
        match b {
            ast::SetExpr::Select(sel) => {
                !has_aggregate(sel)
                    && sel.from.iter().any(|twj| {
                        let outer = twj.joins.iter().any(|j| {
                            matches!(
                                j.join_operator,
                                ast::JoinOperator::RightOuter(_)
                                    | ast::JoinOperator::FullOuter(_)
                                    | ast::JoinOperator::Right(_)
                            )
                        });
                        ((is_empty_table(&twj.relation) || known.filtered_empty(&twj.relation, sel)) && !outer)
                            || twj.joins.iter().any(|j| {
                                (is_empty_table(&j.relation) || known.filtered_empty(&j.relation, sel))
                                    && matches!(
                                        j.join_operator,
                                        ast::JoinOperator::Inner(_)
                                            | ast::JoinOperator::Join(_)
                                            | ast::JoinOperator::CrossJoin(_)
                                    )
                            })
                    })
            }
            ast::SetExpr::Query(q) => empty_body(&q.body, known),
            ast::SetExpr::SetOperation { op, left, right, .. } => match op {
                ast::SetOperator::Union => empty_body(left, known) && empty_body(right, known),
                ast::SetOperator::Intersect => empty_body(left, known) || empty_body(right, known),
                _ => empty_body(left, known),
            },
            _ => false,
        }
    }
    if q.with.is_some() || !empty_body(&q.body, &known) {
        return None;
    }
    let mut first = q.body.as_ref();
    loop {
        match first {
            ast::SetExpr::SetOperation { left, .. } => first = left,
            ast::SetExpr::Query(q) => first = &q.body,
            _ => break,
        }
    }
    let ast::SetExpr::Select(sel) = first else { return None };
    sel.projection
        .iter()
        .map(|item| match item {
            ast::SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            ast::SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.clone()),
            ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) => p.last().map(|i| i.value.clone()),
            ast::SelectItem::UnnamedExpr(_) => Some("?column?".into()),
            _ => None,
        })
        .collect()
}

/// `x::T[]`: the text form `'{1,2}'` becomes `ARRAY['1','2']`, which casts element-wise; uuid[],
/// json[] and jsonb[] are text arrays here, each element checked as its type.
fn array_cast(e: &mut Expr) {
    let Expr::Cast { expr, data_type: ast::DataType::Array(elem), .. } = e else { return };
    // '{1,2}'::int[]: the text form becomes ARRAY['1','2'], which casts element-wise.
    if let Some(arr) = array_text_literal(expr) {
        **expr = arr;
    }
    // uuid[], json[], jsonb[]: text arrays here, each element checked as its type.
    let f = match elem {
        ast::ArrayElemTypeDef::SquareBracket(t, _)
        | ast::ArrayElemTypeDef::AngleBracket(t)
        | ast::ArrayElemTypeDef::Parenthesis(t) => match **t {
            ast::DataType::Uuid => Some("bkg_uuid_in"),
            ast::DataType::JSON | ast::DataType::JSONB => Some("bkg_json_in"),
            _ => None,
        },
        ast::ArrayElemTypeDef::None => None,
    };
    if let Some(f) = f {
        let value = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
        *e = match value {
            Expr::Array(mut a) => {
                a.elem = a.elem.into_iter().map(|x| call(f, vec![x])).collect();
                Expr::Array(a)
            }
            other => Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(other),
                data_type: ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
                    Box::new(ast::DataType::Text),
                    None,
                )),
                array: false,
                format: None,
            },
        };
    }
}

/// `'{1,2}'` (an array in PostgreSQL's text form, integers only) as `ARRAY[1,2]`.
/// `'{a,"b c",NULL}'` as `ARRAY['a', 'b c', NULL]` (elements stay text; a cast types them).
/// As [`array_text_literal`], but a string that is not an array's text form is an error (22P02).
pub fn array_text_literal_checked(e: &Expr) -> crate::error::SqlResult<Option<Expr>> {
    if let Expr::Value(v) = unparenthesized(e)
        && let ast::Value::SingleQuotedString(text) | ast::Value::EscapedStringLiteral(text) = &v.value
    {
        crate::types::parse_pg_array(text)?;
    }
    Ok(array_text_literal(e))
}

pub fn array_text_literal(e: &Expr) -> Option<Expr> {
    let Expr::Value(v) = unparenthesized(e) else { return None };
    // E'…' (psycopg writes arrays of JSON so) is unescaped by the parser already.
    let (ast::Value::SingleQuotedString(text) | ast::Value::EscapedStringLiteral(text)) = &v.value else {
        return None;
    };
    let items = crate::types::parse_pg_array(text).ok()?;
    let elem = items
        .into_iter()
        .map(|x| match x {
            Some(s) => Expr::value(ast::Value::SingleQuotedString(s)),
            None => Expr::value(ast::Value::Null),
        })
        .collect();
    Some(Expr::Array(ast::Array { elem, named: true }))
}

/// `e` without the parentheses around it (`('{a,b}')::text[]` is `'{a,b}'::text[]`).
fn unparenthesized(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}

fn array_literal(e: &Expr) -> Option<Expr> {
    let Expr::Value(v) = e else { return None };
    let ast::Value::SingleQuotedString(text) = &v.value else { return None };
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let elem = if inner.trim().is_empty() {
        vec![]
    } else {
        inner
            .split(',')
            .map(|x| x.trim().parse::<i64>().ok().map(|n| Expr::value(ast::Value::Number(n.to_string(), false))))
            .collect::<Option<Vec<_>>>()?
    };
    Some(Expr::Array(ast::Array { elem, named: true }))
}
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a))).collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Catalog queries use scalar subqueries that return at most one row without aggregating
/// (`(SELECT d.adbin FROM pg_attrdef d WHERE d.adrelid = a.attrelid ...)`); the planner only
/// decorrelates aggregated ones, so wrap the single item in `max()`, which is the same value.
fn aggregate_catalog_subquery(q: &mut ast::Query) {
    let ast::SetExpr::Select(sel) = q.body.as_mut() else { return };
    // There are no collations besides the default: psql's per-column collation lookup (a
    // subquery the planner cannot decorrelate) is always NULL.
    let reads = |t: &str| {
        sel.from.iter().any(|f| {
            matches!(&f.relation, ast::TableFactor::Table { name, .. }
                if name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value == t))
        })
    };
    if reads("pg_collation") && sel.projection.len() == 1 {
        sel.projection[0] = ast::SelectItem::UnnamedExpr(Expr::value(ast::Value::Null));
        sel.selection = None;
        sel.from.clear();
        return;
    }
    let reads_catalog = sel.from.iter().any(|f| match &f.relation {
        ast::TableFactor::Table { name, .. } => {
            name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.starts_with("pg_"))
        }
        _ => false,
    });
    if reads_catalog && let Some(w) = sel.selection.take() {
        // A bare boolean column of the outer query as a conjunct (`... AND a.atthasdef`) stops
        // decorrelation; in catalog lookups it only guards rows that do not exist anyway.
        let local: Vec<String> = sel
            .from
            .iter()
            .filter_map(|f| match &f.relation {
                ast::TableFactor::Table { name, alias, .. } => Some(
                    alias
                        .as_ref()
                        .map(|a| a.name.value.clone())
                        .unwrap_or_else(|| name.0.last().map(|p| p.to_string()).unwrap_or_default()),
                ),
                _ => None,
            })
            .collect();
        let mut conjuncts = Vec::new();
        split_and(w, &mut conjuncts);
        conjuncts.retain(|c| !matches!(c, Expr::CompoundIdentifier(p) if p.len() == 2 && !local.contains(&p[0].value)));
        sel.selection = conjuncts.into_iter().reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: ast::BinaryOperator::And,
            right: Box::new(b),
        });
    }
    if !reads_catalog
        || sel.projection.len() != 1
        || !matches!(sel.group_by, ast::GroupByExpr::Expressions(ref v, _) if v.is_empty())
    {
        return;
    }
    let wrap = |e: &mut Expr| {
        let inner = std::mem::replace(e, Expr::value(ast::Value::Null));
        let text = format!("max({inner})");
        *e =
            datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
                .try_with_sql(&text)
                .and_then(|mut p| p.parse_expr())
                .unwrap_or(inner);
    };
    match &mut sel.projection[0] {
        ast::SelectItem::UnnamedExpr(e) if !matches!(e, Expr::Function(_)) || !is_aggregate(e) => wrap(e),
        ast::SelectItem::ExprWithAlias { expr, .. } if !is_aggregate(expr) => wrap(expr),
        _ => {}
    }
}

fn split_and(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp { left, op: ast::BinaryOperator::And, right } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        other => out.push(other),
    }
}

fn is_aggregate(e: &Expr) -> bool {
    matches!(e, Expr::Function(f) if ["count", "max", "min", "sum", "avg", "array_agg", "string_agg", "bool_and", "bool_or"]
        .contains(&f.name.to_string().to_lowercase().as_str()))
}

//! The table endpoint's methods: GET/HEAD read, POST inserts (and upserts), PATCH updates,
//! DELETE deletes, PUT upserts one row by its primary key. Each builds parameterised SQL and
//! runs it in the request's transaction.

use super::*;
use bkg_sql::SqlState;

/// One table request on its way through a method: what every handler needs.
struct Call<'a> {
    reader: Reader<'a>,
    rel: &'a Rel,
    req: Request,
    pref: &'a Prefer,
    format: Format,
    header_names: Vec<String>,
    /// The answer carries the rows (Prefer: return=representation, or a single object).
    representation: bool,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn dispatch(
    s: &RestState,
    ctx: &mut Ctx,
    method: &Method,
    headers: &HeaderMap,
    rel: &Rel,
    req: Request,
    pref: &Prefer,
    format: Format,
    body: Option<bytes::Bytes>,
    cat: Arc<bkg_kernel::Catalog>,
) -> Result<Response, RestError> {
    let anonymous = ctx.anonymous;
    let header_names = table::header_names(rel, &req.select);
    let representation = pref.ret.as_deref() == Some("representation") || format == Format::Object;
    let mut call = Call {
        reader: Reader { session: ctx.session(), cat, anonymous },
        rel,
        req,
        pref,
        format,
        header_names,
        representation,
    };
    let body = body.as_deref().unwrap_or_default();
    match *method {
        Method::GET | Method::HEAD => call.read(headers, s.config.max_rows, *method == Method::HEAD).await,
        Method::POST => call.insert(body).await,
        Method::PATCH => call.update(body).await,
        Method::DELETE => call.delete().await,
        Method::PUT => call.put(body).await,
        _ => Err(RestError::new(405, SqlState::PgrstMethod, format!("Unsupported HTTP method: {method}"))),
    }
}

impl Call<'_> {
    /// GET and HEAD: the rows the filters, order and range select.
    async fn read(&mut self, headers: &HeaderMap, max_rows: Option<usize>, head: bool) -> Result<Response, RestError> {
        let req = &self.req;
        let (r_off, r_lim) = range(headers)?;
        let offset = req.offset.or(r_off).unwrap_or(0);
        let mut limit = match (req.limit, r_lim) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(m) = max_rows {
            limit = Some(limit.map_or(m, |l| l.min(m)));
        }
        let (rows, total) =
            self.reader.read(self.rel, &req.select, &req.conds, &req.order, limit, offset, self.pref.count).await?;
        if let Some(t) = total
            && offset > 0
            && offset as u64 >= t
        {
            let e = RestError::new(416, SqlState::PgrstRange, "Requested range not satisfiable")
                .details(format!("An offset of {offset} was requested, but there are only {t} rows."));
            return Ok(with_range(e.into_response(), format!("*/{t}")));
        }
        let partial = total.is_some_and(|t| offset > 0 || ((offset + rows.len()) as u64) < t);
        let status = if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
        let r = response(status, self.format, &rows, &self.header_names, head)?;
        Ok(with_range(r, content_range(offset, rows.len(), total)))
    }

    /// POST: inserts the body's objects; with Prefer: resolution=..., an upsert.
    async fn insert(&mut self, body: &[u8]) -> Result<Response, RestError> {
        let (rel, pref) = (self.rel, self.pref);
        let body = parse_json(body)?;
        let objs = objects(&body)?;
        let cols: Vec<String> = match &self.req.columns {
            Some(c) => c.clone(),
            None => same_keys(&objs)?,
        };
        check_columns(rel, &cols)?;
        if objs.is_empty() {
            let r = if self.representation {
                response(StatusCode::CREATED, self.format, &[], &self.header_names, false)?
            } else {
                no_content(StatusCode::CREATED)
            };
            return Ok(with_range(r, "*/0".into()));
        }
        let target = match &self.req.on_conflict {
            Some(c) => c.clone(),
            None => rel.primary_key(),
        };
        check_columns(rel, &target)?;
        let mut batches = Vec::new();
        let mut n = 0u64;
        for (gcols, gobjs) in insert_groups(&objs, &cols, pref.missing_default) {
            let mut sql = Sql::default();
            let mut rows_sql = Vec::with_capacity(gobjs.len());
            for o in gobjs {
                let vals = row_values(&mut sql, rel, &gcols, o)?;
                rows_sql.push(if vals.is_empty() { "DEFAULT".to_string() } else { format!("({})", vals.join(", ")) });
            }
            let col_list = gcols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
            sql.text = if gcols.is_empty() {
                format!("INSERT INTO {} DEFAULT VALUES", rel.sql_name())
            } else {
                format!("INSERT INTO {} ({col_list}) VALUES {}", rel.sql_name(), rows_sql.join(", "))
            };
            if let Some(res) = &pref.resolution {
                sql.text.push_str(&on_conflict(res, &target, &gcols)?);
            }
            // The written rows are only read back when the answer needs them.
            if self.representation || pref.ret.as_deref() == Some("headers-only") {
                sql.text.push_str(" RETURNING *");
            }
            match run(self.reader.session, sql, self.reader.anonymous).await? {
                Output::Rows { batches: b, .. } => {
                    n += b.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                    batches.extend(b);
                }
                Output::Command { rows, .. } => n += rows.unwrap_or(0),
                _ => {}
            }
        }
        let cr = format!("*/{}", if pref.count { n.to_string() } else { "*".into() });
        if self.representation {
            let rows = self.reader.written(rel, &self.req.select, &batches).await?;
            let r = response(StatusCode::CREATED, self.format, &rows, &self.header_names, false)?;
            return Ok(with_range(r, cr));
        }
        let mut r = no_content(StatusCode::CREATED);
        if pref.ret.as_deref() == Some("headers-only")
            && let Some(loc) = location(rel, &batches)
            && let Ok(v) = HeaderValue::from_str(&loc)
        {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Ok(with_range(r, cr))
    }

    /// PATCH: sets the body's columns on the rows the filters select (a filter is required).
    async fn update(&mut self, body: &[u8]) -> Result<Response, RestError> {
        let body = parse_json(body)?;
        let Json::Object(o) = &body else {
            return Err(RestError::new(400, SqlState::PgrstBody, "PATCH body must be a JSON object"));
        };
        if self.req.conds.is_empty() {
            return Err(needs_filter("UPDATE"));
        }
        let cols: Vec<String> = o.keys().cloned().collect();
        check_columns(self.rel, &cols)?;
        if cols.is_empty() {
            return if self.representation {
                response(StatusCode::OK, self.format, &[], &self.header_names, false)
            } else {
                Ok(no_content(StatusCode::NO_CONTENT))
            };
        }
        let mut sql = Sql::default();
        let vals = row_values(&mut sql, self.rel, &cols, o)?;
        let sets: Vec<String> = cols.iter().zip(vals).map(|(c, v)| format!("{} = {v}", quote(c))).collect();
        let wheres = self.req.conds.iter().map(|c| sql.cond(self.rel, c, None)).collect::<Result<Vec<_>, _>>()?;
        sql.text = format!("UPDATE {} SET {} WHERE {}", self.rel.sql_name(), sets.join(", "), wheres.join(" AND "));
        self.write_result(sql).await
    }

    /// DELETE: deletes the rows the filters select (a filter is required).
    async fn delete(&mut self) -> Result<Response, RestError> {
        if self.req.conds.is_empty() {
            return Err(needs_filter("DELETE"));
        }
        let mut sql = Sql::default();
        let wheres = self.req.conds.iter().map(|c| sql.cond(self.rel, c, None)).collect::<Result<Vec<_>, _>>()?;
        sql.text = format!("DELETE FROM {} WHERE {}", self.rel.sql_name(), wheres.join(" AND "));
        self.write_result(sql).await
    }

    /// PUT: inserts or replaces the one row the URL names by its whole primary key.
    async fn put(&mut self, body: &[u8]) -> Result<Response, RestError> {
        let rel = self.rel;
        let pk = rel.primary_key();
        let url_pk = put_key(&self.req, &pk)?;
        let body = parse_json(body)?;
        let objs = objects(&body)?;
        let [o] = objs.as_slice() else {
            return Err(RestError::new(400, SqlState::PgrstBody, "PUT body must be one object"));
        };
        let mut o = (*o).clone();
        for (c, v) in &url_pk {
            let dt = rel.column(c)?.clone();
            match o.get(c) {
                Some(b) if table::body_value(b, &dt, c)?.as_deref() != Some(v.as_str()) => {
                    return Err(RestError::new(
                        400,
                        SqlState::PgrstPutMismatch,
                        "Payload values do not match URL in primary key column(s)",
                    ));
                }
                Some(_) => {}
                None => {
                    o.insert(c.clone(), Json::String(v.clone()));
                }
            }
        }
        let cols: Vec<String> = o.keys().cloned().collect();
        check_columns(rel, &cols)?;
        let mut sql = Sql::default();
        let vals = row_values(&mut sql, rel, &cols, &o)?;
        sql.text = format!(
            "INSERT INTO {} ({}) VALUES ({}){}",
            rel.sql_name(),
            cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "),
            vals.join(", "),
            on_conflict("merge-duplicates", &pk, &cols)?
        );
        self.write_result(sql).await
    }

    /// Runs an UPDATE, DELETE or PUT and answers with its rows or just the count.
    async fn write_result(&mut self, mut sql: Sql) -> Result<Response, RestError> {
        let count = self.pref.count;
        if self.representation {
            sql.text.push_str(" RETURNING *");
        }
        let (batches, n) = match run(self.reader.session, sql, self.reader.anonymous).await? {
            Output::Rows { batches, .. } => {
                let n = batches.iter().map(|b| b.num_rows()).sum();
                (batches, n)
            }
            Output::Command { rows, .. } => (vec![], rows.unwrap_or(0) as usize),
            _ => (vec![], 0),
        };
        let cr = if n == 0 {
            format!("*/{}", if count { "0" } else { "*" })
        } else {
            format!("0-{}/{}", n - 1, if count { n.to_string() } else { "*".into() })
        };
        if self.representation {
            let rows = self.reader.written(self.rel, &self.req.select, &batches).await?;
            return Ok(with_range(response(StatusCode::OK, self.format, &rows, &self.header_names, false)?, cr));
        }
        Ok(with_range(no_content(StatusCode::NO_CONTENT), cr))
    }
}

/// The keys all objects of a POST body share (they must all have the same ones).
fn same_keys(objs: &[&serde_json::Map<String, Json>]) -> Result<Vec<String>, RestError> {
    let first: Vec<String> = objs.first().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    for o in objs {
        if o.len() != first.len() || !first.iter().all(|k| o.contains_key(k)) {
            return Err(RestError::new(400, SqlState::PgrstBody, "All object keys must match").hint(
                "Give every object the same keys, or list them in columns= (missing ones become NULL, or defaults with Prefer: missing=default).",
            ));
        }
    }
    Ok(first)
}

/// The objects grouped by the columns they give. Without missing=default there is one group
/// of all columns; with it, each group is one INSERT, so absent columns take their defaults.
fn insert_groups<'o>(
    objs: &[&'o serde_json::Map<String, Json>],
    cols: &[String],
    missing_default: bool,
) -> Vec<(Vec<String>, Vec<&'o serde_json::Map<String, Json>>)> {
    let mut groups: Vec<(Vec<String>, Vec<&serde_json::Map<String, Json>>)> = Vec::new();
    for o in objs {
        let present: Vec<String> =
            if missing_default { cols.iter().filter(|c| o.contains_key(*c)).cloned().collect() } else { cols.to_vec() };
        match groups.iter_mut().find(|(g, _)| *g == present) {
            Some((_, v)) => v.push(o),
            None => groups.push((present, vec![o])),
        }
    }
    groups
}

/// ` ON CONFLICT (target) DO ...` of an upsert: `ignore-duplicates` skips, anything else
/// (`merge-duplicates`) updates the columns given that are not in the target.
fn on_conflict(resolution: &str, target: &[String], cols: &[String]) -> Result<String, RestError> {
    if target.is_empty() {
        return Err(RestError::new(400, SqlState::PgrstQueryString, "upsert needs on_conflict= or a primary key"));
    }
    let t = target.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let sets: Vec<String> =
        cols.iter().filter(|c| !target.contains(c)).map(|c| format!("{} = excluded.{}", quote(c), quote(c))).collect();
    Ok(if resolution == "ignore-duplicates" || sets.is_empty() {
        format!(" ON CONFLICT ({t}) DO NOTHING")
    } else {
        format!(" ON CONFLICT ({t}) DO UPDATE SET {}", sets.join(", "))
    })
}

/// The primary key a PUT's URL gives: all and only its columns, each with `eq`.
fn put_key(req: &Request, pk: &[String]) -> Result<Vec<(String, String)>, RestError> {
    let bad_put = || {
        RestError::new(
            405,
            SqlState::PgrstPutKey,
            "Filters must include all and only primary key columns with 'eq' operators",
        )
    };
    let mut url_pk: Vec<(String, String)> = Vec::new();
    for c in &req.conds {
        match c {
            Cond::Filter(f) if !f.negate && f.op == grammar::Op::Eq && f.field.json.is_empty() => match &f.operand {
                grammar::Operand::One(v) => url_pk.push((f.field.column.clone(), v.clone())),
                _ => return Err(bad_put()),
            },
            _ => return Err(bad_put()),
        }
    }
    if pk.is_empty() || url_pk.len() != pk.len() || !pk.iter().all(|k| url_pk.iter().any(|(c, _)| c == k)) {
        return Err(bad_put());
    }
    Ok(url_pk)
}

fn response(
    status: StatusCode,
    format: Format,
    rows: &[RowCells],
    header: &[String],
    head: bool,
) -> Result<Response, RestError> {
    let (ctype, body) = match format {
        Format::Json => ("application/json; charset=utf-8", table::json_array(rows)),
        Format::Csv => ("text/csv; charset=utf-8", table::csv(rows, header)),
        Format::Object => {
            if rows.len() != 1 {
                return Err(RestError::new(
                    406,
                    SqlState::PgrstSingular,
                    "JSON object requested, multiple (or no) rows returned",
                )
                .details(format!("The result contains {} rows", rows.len())));
            }
            ("application/vnd.pgrst.object+json; charset=utf-8", table::object(&rows[0]))
        }
    };
    let mut r = if head { (status, "").into_response() } else { (status, body).into_response() };
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(r)
}

fn with_range(mut r: Response, cr: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cr) {
        r.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    r
}

fn no_content(status: StatusCode) -> Response {
    status.into_response()
}

/// Columns named in a write's body, checked against the relation.
fn check_columns(rel: &Rel, cols: &[String]) -> Result<(), RestError> {
    for c in cols {
        if !rel.columns.iter().any(|(n, _)| n == c) {
            return Err(RestError::new(
                400,
                SqlState::PgrstNoColumn,
                format!("Could not find the '{c}' column of '{}' in the schema cache", rel.name),
            ));
        }
    }
    Ok(())
}

fn objects(body: &Json) -> Result<Vec<&serde_json::Map<String, Json>>, RestError> {
    let not_obj = || RestError::new(400, SqlState::PgrstBody, "Body must be a JSON object or an array of objects");
    match body {
        Json::Object(o) => Ok(vec![o]),
        Json::Array(items) => items.iter().map(|i| i.as_object().ok_or_else(not_obj)).collect(),
        _ => Err(not_obj()),
    }
}

/// Placeholders for the values an object gives for `cols` (absent keys are NULL).
fn row_values(
    sql: &mut Sql,
    rel: &Rel,
    cols: &[String],
    o: &serde_json::Map<String, Json>,
) -> Result<Vec<String>, RestError> {
    let mut out = Vec::with_capacity(cols.len());
    for c in cols {
        let dt = rel.column(c)?.clone();
        let v = match o.get(c) {
            Some(v) => table::body_value(v, &dt, c)?,
            None => None,
        };
        out.push(sql.value(v.as_deref(), Some(&dt)));
    }
    Ok(out)
}

fn needs_filter(what: &str) -> RestError {
    RestError::new(400, SqlState::CardinalityViolation, format!("{what} requires a WHERE clause"))
        .hint("Add a filter; to affect every row say so explicitly, e.g. id=not.is.null.")
}

/// `/table?pk=eq.value` of the first written row (Prefer: return=headers-only).
fn location(rel: &Rel, batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Option<String> {
    let pk = rel.primary_key();
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    if pk.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for c in &pk {
        let pos = rel.columns.iter().position(|(n, _)| n == c)?;
        let v = bkg_sql::pg_format::text_value(b.column(pos).as_ref(), 0).ok()??;
        let enc: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
        parts.push(format!("{}=eq.{enc}", form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()));
    }
    Some(format!("/{}?{}", rel.name, parts.join("&")))
}

//! Statements over the wire: the simple and extended query protocols, prepared statements and
//! portals, COPY, and how results and errors are encoded.

use super::*;

pub fn user_error(e: SqlError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

pub(crate) fn error_info(e: SqlError) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_string(), e.code.to_string(), e.message);
    info.detail = e.detail;
    info.hint = e.hint;
    info
}

/// One prepared statement of the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub stmt: Option<Statement>,
    /// The text it was parsed from, for its trace span (not printed again at every Execute).
    pub text: Arc<str>,
    pub param_types: Vec<Type>,
    pub fields: Vec<FieldInfo>,
    /// The cached plan of a point query (made at Parse), run with each Bind's values.
    pub point: Option<Arc<bkg_sql::fast_path::PointPlan>>,
    /// Why the rows of a statement that returns rows could not be described at Parse (its
    /// parameters' types were needed): a Describe of the statement answers this error, one of
    /// a portal describes it with the bound values. Never NoData for a statement that then
    /// sends rows: the client could not read them.
    pub describe_error: Option<SqlError>,
}

pub struct BkgQueryParser {
    pub(crate) session: Arc<Mutex<Session>>,
}

pub(crate) fn fields_of(schema: &SchemaRef, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| FieldInfo::new(f.name().clone(), None, None, encode::pg_type(f), format.format_for(i)))
        .collect()
}

/// True when a result's columns differ in number or type from those described at Parse.
pub(crate) fn changed_shape(described: &[FieldInfo], schema: &SchemaRef) -> bool {
    !described.is_empty()
        && (described.len() != schema.fields().len()
            || described.iter().zip(schema.fields().iter()).any(|(d, f)| *d.datatype() != encode::pg_type(f)))
}

/// True for statements that answer with rows (so a Describe must give their columns).
fn returns_rows(stmt: &Statement) -> bool {
    match stmt {
        Statement::Query(_) | Statement::Explain { .. } | Statement::ShowVariable { .. } => true,
        Statement::Fetch { into, .. } => into.is_none(),
        Statement::Insert(i) => i.returning.is_some(),
        Statement::Update(u) => u.returning.is_some(),
        Statement::Delete(d) => d.returning.is_some(),
        _ => false,
    }
}

/// A query with each parameter the client gave a type for cast to that type, so its result
/// columns are described as they will come (`SELECT $1` with an int2 parameter is an int2
/// column, not text).
fn with_client_types(stmt: &Statement, types: &[Option<Type>]) -> Statement {
    let mut out = stmt.clone();
    if !matches!(stmt, Statement::Query(_)) || types.iter().all(|t| t.as_ref().and_then(sql_type_name).is_none()) {
        return out;
    }
    let exprs: Vec<datafusion::sql::sqlparser::ast::Expr> = (0..types.len())
        .map(|i| {
            let text = match types[i].as_ref().and_then(sql_type_name) {
                Some(t) => format!("CAST(${} AS {t})", i + 1),
                None => format!("${}", i + 1),
            };
            datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
                .try_with_sql(&text)
                .and_then(|mut p| p.parse_expr())
                .expect("a placeholder with a cast parses")
        })
        .collect();
    // Placeholders past the given types keep their own (inferred) types.
    let mut all = exprs;
    let n = bkg_sql::describe::count_placeholders(stmt);
    for i in all.len()..n {
        all.push(datafusion::sql::sqlparser::ast::Expr::value(datafusion::sql::sqlparser::ast::Value::Placeholder(
            format!("${}", i + 1),
        )));
    }
    if bind_params(&mut out, &all).is_err() {
        return stmt.clone();
    }
    out
}

/// The SQL name of a parameter type the planner can cast to.
fn sql_type_name(t: &Type) -> Option<&'static str> {
    Some(match *t {
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::BOOL => "boolean",
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => "text",
        Type::NUMERIC => "numeric",
        Type::DATE => "date",
        Type::TIMESTAMP => "timestamp",
        Type::TIMESTAMPTZ => "timestamptz",
        Type::BYTEA => "bytea",
        _ => return None,
    })
}

pub(crate) fn arrow_to_param_type(t: &datafusion::arrow::datatypes::DataType) -> Type {
    encode::pg_type(&datafusion::arrow::datatypes::Field::new("p", t.clone(), true))
}

#[async_trait]
impl QueryParser for BkgQueryParser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut stmts = Session::parse(sql).map_err(user_error)?;
        if stmts.len() > 1 {
            return Err(user_error(SqlError::syntax("cannot insert multiple commands into a prepared statement")));
        }
        let Some(stmt) = stmts.pop() else {
            return Ok(None);
        };
        let mut session = self.session.lock().await;
        bind_user(&mut session, client);
        let (described, describe_error) = if session.in_failed_transaction() {
            (Default::default(), None)
        } else {
            match session.describe(&with_client_types(&stmt, types)).await {
                Ok(d) => (d, None),
                Err(e) => {
                    // Parameters nothing gives a type to are text, as PostgreSQL resolves an
                    // unknown (`now() AT TIME ZONE $1`).
                    let n = bkg_sql::describe::count_placeholders(&stmt);
                    let as_text: Vec<Option<Type>> = (0..n)
                        .map(|i| types.get(i).cloned().flatten().filter(|t| *t != Type::UNKNOWN).or(Some(Type::TEXT)))
                        .collect();
                    match session.describe(&with_client_types(&stmt, &as_text)).await {
                        Ok(d) if n > 0 => {
                            let params = (0..n)
                                .map(|i| {
                                    d.params
                                        .get(i)
                                        .cloned()
                                        .flatten()
                                        .or(Some(datafusion::arrow::datatypes::DataType::Utf8))
                                })
                                .collect();
                            (bkg_sql::describe::Described { params, schema: d.schema }, None)
                        }
                        _ => (Default::default(), returns_rows(&stmt).then_some(e)),
                    }
                }
            }
        };
        let n = described.params.len().max(types.len());
        let param_types = (0..n)
            .map(|i| {
                types.get(i).cloned().flatten().filter(|t| *t != Type::UNKNOWN).unwrap_or_else(|| {
                    described.params.get(i).cloned().flatten().map(|t| arrow_to_param_type(&t)).unwrap_or(Type::TEXT)
                })
            })
            .collect();
        let fields = described.schema.map(|s| fields_of(&s, &Format::UnifiedText)).unwrap_or_default();
        let point = match &stmt {
            Statement::Query(q) => {
                bkg_sql::fast_path::plan_point_select(&session, &session.engine.catalog(), q).map(Arc::new)
            }
            _ => None,
        };
        let text = Arc::from(bkg_sql::telemetry::statement_text(sql));
        Ok(Some(Prepared { stmt: Some(stmt), text, param_types, fields, point, describe_error }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.clone())
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.cloned().unwrap_or(Format::UnifiedText);
        Ok(stmt
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| FieldInfo::new(f.name().to_string(), None, None, f.datatype().clone(), format.format_for(i)))
            .collect())
    }
}

/// Per-connection handlers.
#[derive(Clone)]
pub struct ConnHandlers {
    pub(crate) session: Arc<Mutex<Session>>,
    pub(crate) parser: Arc<BkgQueryParser>,
    pub(crate) server: Arc<PgServer>,
    /// The role whose connection count this connection holds (taken at login).
    pub(crate) slot: Arc<parking_lot::Mutex<Option<String>>>,
    /// Where cancel requests for this connection go, and its backend key once registered.
    pub(crate) cancel: Arc<bkg_sql::CancelSignal>,
    pub(crate) cancel_key: Arc<parking_lot::Mutex<Option<(i32, bytes::Bytes)>>>,
    /// Names of the statements prepared over the extended protocol (Parse) and not yet closed:
    /// pgwire's store cannot list them, and `DISCARD ALL` / `DEALLOCATE ALL` must drop them all
    /// (a pooler such as PgBouncer resets a server connection with `DISCARD ALL` before handing
    /// it to another client).
    pub(crate) prepared: Arc<parking_lot::Mutex<std::collections::BTreeSet<String>>>,
}

impl ConnHandlers {
    /// After `DISCARD ALL` or `DEALLOCATE ALL` succeeded: forget the protocol-level prepared
    /// statements too (and, for DISCARD ALL, the portals), as PostgreSQL does.
    fn forget_prepared<C>(&self, client: &C, outputs: &[&Output])
    where
        C: ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        let mut discard = false;
        let mut deallocate = false;
        for o in outputs {
            if let Output::Command { tag, .. } = o {
                discard |= tag == "DISCARD ALL";
                deallocate |= tag == "DEALLOCATE ALL";
            }
        }
        if !(discard || deallocate) {
            return;
        }
        let names = std::mem::take(&mut *self.prepared.lock());
        for n in &names {
            client.portal_store().rm_statement(n);
        }
        if discard {
            client.portal_store().clear_portals();
        }
    }
}

pub(crate) fn encode_rows(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    fields: &Arc<Vec<FieldInfo>>,
) -> Result<Vec<PgWireResult<DataRow>>, SqlError> {
    let mut rows = Vec::new();
    let binary: Vec<bool> = fields.iter().map(|f| f.format() == FieldFormat::Binary).collect();
    let types: Vec<Type> = fields.iter().map(|f| f.datatype().clone()).collect();
    let _ = schema;
    for b in batches {
        for r in 0..b.num_rows() {
            let mut data = BytesMut::with_capacity(16 * b.num_columns());
            for (c, col) in b.columns().iter().enumerate() {
                if binary[c] {
                    let mut v = BytesMut::new();
                    if encode::binary_value(col.as_ref(), r, &types[c], &mut v)? {
                        data.put_i32(v.len() as i32);
                        data.put_slice(&v);
                    } else {
                        data.put_i32(-1);
                    }
                } else {
                    match encode::text_value(col.as_ref(), r)? {
                        Some(s) => {
                            data.put_i32(s.len() as i32);
                            data.put_slice(s.as_bytes());
                        }
                        None => data.put_i32(-1),
                    }
                }
            }
            rows.push(Ok(DataRow::new(data, b.num_columns() as i16)));
        }
    }
    Ok(rows)
}

pub(crate) fn to_response(out: Output, format: &Format) -> Response {
    match out {
        Output::CopyIn { columns } => Response::CopyIn(CopyResponse::new(0, columns, stream::empty())),
        Output::CopyOut { schema, batches, opts } => match bkg_sql::copy::encode_rows(&schema, &batches, &opts) {
            Ok(lines) => {
                let n = schema.fields().len();
                let data = lines.into_iter().map(|l| Ok(CopyData::new(bytes::Bytes::from(l))));
                Response::CopyOut(CopyResponse::new(0, n, stream::iter(data)))
            }
            Err(e) => Response::Error(Box::new(error_info(e))),
        },
        Output::Rows { schema, batches, tag } => {
            let fields = Arc::new(fields_of(&schema, format));
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            match encode_rows(&schema, &batches, &fields) {
                Ok(rows) => {
                    let mut resp = QueryResponse::new(fields, stream::iter(rows));
                    // pgwire appends the row count itself.
                    let _ = n;
                    let tag = if tag == "INSERT" { "INSERT 0".to_string() } else { tag };
                    resp.set_command_tag(&tag);
                    Response::Query(resp)
                }
                Err(e) => Response::Error(Box::new(error_info(e))),
            }
        }
        Output::Command { tag, rows, txn } => {
            let mut t = Tag::new(&tag);
            if tag == "INSERT" {
                t = t.with_oid(0);
            }
            if let Some(n) = rows {
                t = t.with_rows(n as usize);
            }
            match txn {
                Some(TxnEvent::Begin) => Response::TransactionStart(t),
                Some(TxnEvent::Commit | TxnEvent::Rollback) => Response::TransactionEnd(t),
                None => Response::Execution(t),
            }
        }
    }
}

/// The span of one statement (a simple query message, or an Execute): the root of its trace.
fn statement_span(sql: &str) -> tracing::Span {
    bkg_sql::telemetry::door_span(None, || {
        tracing::debug_span!(
            target: bkg_sql::telemetry::SPAN_TARGET,
            "pg.statement",
            otel.kind = "server",
            db.system.name = "postgresql",
            db.query.text = bkg_sql::telemetry::statement_text(&bkg_sql::audit::redact_passwords(sql)),
            db.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        )
    })
}

/// Records the first error of a statement's answers on its span.
fn record_outcome(span: &tracing::Span, errors: impl IntoIterator<Item = (String, String)>) {
    if let Some((code, message)) = errors.into_iter().next() {
        bkg_sql::telemetry::record_error(span, &code, &message);
    }
}

fn wire_error(e: &PgWireError) -> Option<(String, String)> {
    match e {
        PgWireError::UserError(info) => Some((info.code.clone(), info.message.clone())),
        other => Some(("XX000".into(), other.to_string())),
    }
}

#[async_trait]
impl SimpleQueryHandler for ConnHandlers {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let span = statement_span(query);
        let started = std::time::Instant::now();
        let r = bkg_sql::in_span!(span.clone(), self.simple_query(client, query));
        let error = match &r {
            Ok(out) => out.iter().find_map(|o| match o {
                Response::Error(info) => Some((info.code.clone(), info.message.clone())),
                _ => None,
            }),
            Err(e) => wire_error(e),
        };
        self.note_slow(client, query, started, error.as_ref());
        record_outcome(&span, error);
        r
    }
}

impl ConnHandlers {
    /// Hands a finished statement to the slow-statement log (kept only when slow).
    fn note_slow<C: ClientInfo>(
        &self,
        client: &C,
        text: &str,
        started: std::time::Instant,
        error: Option<&(String, String)>,
    ) {
        let code = error.map(|(c, _)| c.as_str());
        if let Some(c) = code {
            self.server.metrics.count_error("pgwire", c);
        }
        // Every statement passes here: the role is looked up only for a slow one.
        let took = started.elapsed();
        if self.server.engine.slow.is_slow(took) {
            let user = client.metadata().get(pgwire::api::METADATA_USER).map_or("", String::as_str);
            self.server.engine.slow.record("pgwire", user, text, took, code);
        }
    }

    async fn simple_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // DEALLOCATE name drops a statement prepared over the extended protocol (psycopg does this).
        let words: Vec<&str> = query.trim().trim_end_matches(';').split_whitespace().collect();
        if let Some(first) = words.first()
            && first.eq_ignore_ascii_case("deallocate")
        {
            let name = words.iter().skip(1).find(|w| !w.eq_ignore_ascii_case("prepare")).map(|w| w.trim_matches('"'));
            if let Some(n) = name.filter(|n| !n.eq_ignore_ascii_case("all")) {
                client.portal_store().rm_statement(n);
                self.prepared.lock().remove(n);
            }
        }
        let mut session = self.session.lock().await;
        bind_user(&mut session, client);
        let mut results = session.execute(query).await;
        self.forget_prepared(client, &results.iter().filter_map(|r| r.as_ref().ok()).collect::<Vec<_>>());
        // A statement that failed and ended the transaction (a COMMIT that could not commit):
        // as in PostgreSQL the connection is then idle, not in a failed transaction. pgwire
        // would mark it failed, so the answers before it go out here and the error takes the
        // error path with the status set to idle.
        let ended = matches!(results.last(), Some(Err(_)))
            && !session.in_transaction()
            && client.transaction_status() != pgwire::messages::response::TransactionStatus::Idle;
        if ended {
            use futures::SinkExt;
            let Some(Err(last)) = results.pop() else { unreachable!("checked above") };
            for r in results {
                self.server.metrics.queries.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(o) => match to_response(o, &Format::UnifiedText) {
                        Response::Query(q) => pgwire::api::query::send_query_response(client, q, true).await?,
                        Response::Execution(tag) | Response::TransactionStart(tag) | Response::TransactionEnd(tag) => {
                            pgwire::api::query::send_execution_response(client, tag).await?
                        }
                        _ => {}
                    },
                    Err(e) => client.feed(PgWireBackendMessage::ErrorResponse(error_info(e).into())).await?,
                }
            }
            self.server.metrics.queries.fetch_add(1, Ordering::Relaxed);
            self.server.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
            client.set_transaction_status(pgwire::messages::response::TransactionStatus::Idle);
            return Err(user_error(last));
        }
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            self.server.metrics.queries.fetch_add(1, Ordering::Relaxed);
            match r {
                Ok(o) => out.push(to_response(o, &Format::UnifiedText)),
                Err(e) => {
                    self.server.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
                    out.push(Response::Error(Box::new(error_info(e))));
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for ConnHandlers {
    type Statement = Prepared;
    type QueryParser = BkgQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &pgwire::api::stmt::StoredStatement<Prepared>,
    ) -> PgWireResult<pgwire::api::results::DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &target.statement;
        if let Some(e) = &prepared.describe_error {
            // Its rows cannot be described before its parameters are known: say why rather
            // than NoData, after which its rows could not be read.
            return Err(user_error(e.clone()));
        }
        let fields = self.parser.get_result_schema(prepared, None)?;
        Ok(pgwire::api::results::DescribeStatementResponse::new(prepared.param_types.clone(), fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
    ) -> PgWireResult<pgwire::api::results::DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let (Some(_), Some(stmt)) = (&prepared.describe_error, &prepared.stmt) else {
            let fields = self.parser.get_result_schema(prepared, Some(&portal.result_column_format))?;
            return Ok(pgwire::api::results::DescribePortalResponse::new(fields));
        };
        // Described with the values bound: their types are known now.
        let bound = bound_statement(stmt, portal)?;
        let mut session = self.session.lock().await;
        bind_user(&mut session, client);
        let described = session.describe(&bound).await.map_err(user_error)?;
        let schema = described.schema.unwrap_or_else(|| Arc::new(datafusion::arrow::datatypes::Schema::empty()));
        Ok(pgwire::api::results::DescribePortalResponse::new(fields_of(&schema, &portal.result_column_format)))
    }

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.clone().unwrap_or_else(|| pgwire::api::DEFAULT_NAME.to_owned());
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        self.prepared.lock().insert(name);
        client.send(PgWireBackendMessage::ParseComplete(ParseComplete::new())).await?;
        Ok(())
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                client.portal_store().rm_statement(name);
                self.prepared.lock().remove(name);
            }
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client.send(PgWireBackendMessage::CloseComplete(CloseComplete::new())).await?;
        Ok(())
    }

    // Replies to Parse, Bind, Describe and Execute wait in the buffer for Sync or Flush.
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement_name = message.statement_name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        let portal_name = message.portal_name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                if !message.parameters.is_empty() {
                    return Err(user_error(SqlError::new(
                        codes::PROTOCOL_VIOLATION,
                        format!(
                            "bind message supplies {} parameters, but prepared statement \"{statement_name}\" requires 0",
                            message.parameters.len()
                        ),
                    )));
                }
                client.portal_store().put_empty_portal(portal_name);
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        client.feed(PgWireBackendMessage::BindComplete(BindComplete::new())).await?;
        Ok(())
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // A cursor DECLAREd in SQL is a portal too (psycopg describes its named cursors so).
        if message.target_type == pgwire::messages::extendedquery::TARGET_TYPE_BYTE_PORTAL
            && let Some(name) = message.name.as_deref()
            && client.portal_store().get_portal(name).is_none()
        {
            let schema = self.session.lock().await.cursor_schema_named(name);
            if let Some(schema) = schema {
                let response =
                    pgwire::api::results::DescribePortalResponse::new(fields_of(&schema, &Format::UnifiedText));
                return pgwire::api::query::send_describe_response(client, &response).await;
            }
        }
        self._on_describe(&mut batch::Batched::new(client), message).await
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self._on_execute(&mut batch::Batched::new(client), message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let span = statement_span(&portal.statement.statement.text);
        let started = std::time::Instant::now();
        let r = bkg_sql::in_span!(span.clone(), self.execute_portal(client, portal));
        let error = r.as_ref().err().and_then(wire_error);
        self.note_slow(client, &portal.statement.statement.text, started, error.as_ref());
        record_outcome(&span, error);
        r
    }
}

/// The portal's statement with its parameters bound to the values of its Bind.
fn bound_statement(stmt: &Statement, portal: &Portal<Prepared>) -> PgWireResult<Statement> {
    let prepared = &portal.statement.statement;
    let mut stmt = stmt.clone();
    let mut values = Vec::with_capacity(portal.parameters.len());
    for (i, p) in portal.parameters.iter().enumerate() {
        let ty = prepared.param_types.get(i).cloned().unwrap_or(Type::TEXT);
        let lit = encode::param_literal_at(p.as_deref(), &ty, portal.parameter_format.is_binary(i), i + 1)
            .map_err(user_error)?;
        let expr =
            datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::PostgreSqlDialect {})
                .try_with_sql(&lit)
                .and_then(|mut p| p.parse_expr())
                .map_err(|e| user_error(SqlError::from(e)))?;
        values.push(expr);
    }
    bind_params(&mut stmt, &values).map_err(user_error)?;
    Ok(stmt)
}

impl ConnHandlers {
    async fn execute_portal<C>(&self, client: &mut C, portal: &Portal<Prepared>) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let Some(stmt) = &prepared.stmt else {
            return Ok(Response::EmptyQuery);
        };
        self.server.metrics.queries.fetch_add(1, Ordering::Relaxed);
        if let Some(plan) = &prepared.point {
            let param = |i: usize, dt: &bkg_kernel::DataType| {
                let ty = prepared.param_types.get(i).cloned().unwrap_or(Type::TEXT);
                let raw = portal.parameters.get(i).cloned().flatten();
                encode::param_value(raw.as_deref(), &ty, portal.parameter_format.is_binary(i), dt)
            };
            let mut session = self.session.lock().await;
            bind_user(&mut session, client);
            match session.execute_point(plan, &param) {
                Some(Ok(o)) => return Ok(to_response(o, &portal.result_column_format)),
                Some(Err(e)) => {
                    self.server.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(user_error(e));
                }
                None => {}
            }
        }
        let stmt = bound_statement(stmt, portal)?;
        let mut session = self.session.lock().await;
        bind_user(&mut session, client);
        match session.execute_statement(stmt).await {
            Ok(Output::Rows { schema, .. }) if changed_shape(&prepared.fields, &schema) => {
                // The client described the statement with other columns (a table changed since
                // Parse): answering with rows of another shape would be misread.
                self.server.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
                Err(user_error(
                    SqlError::new(codes::FEATURE_NOT_SUPPORTED, "cached plan must not change result type")
                        .with_hint("Prepare the statement again."),
                ))
            }
            Ok(o) => {
                self.forget_prepared(client, &[&o]);
                Ok(to_response(o, &portal.result_column_format))
            }
            Err(e) => {
                self.server.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
                if !session.in_transaction() {
                    // A failed COMMIT ends the transaction: the connection is idle, not failed.
                    client.set_transaction_status(pgwire::messages::response::TransactionStatus::Idle);
                }
                Err(user_error(e))
            }
        }
    }
}

#[async_trait]
impl CopyHandler for ConnHandlers {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.lock().await.copy_data(&copy_data.data).await;
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let mut session = self.session.lock().await;
        let n = session.copy_done().await.map_err(user_error)?;
        let status = if session.in_failed_transaction() {
            pgwire::messages::response::TransactionStatus::Error
        } else if session.in_transaction() {
            pgwire::messages::response::TransactionStatus::Transaction
        } else {
            pgwire::messages::response::TransactionStatus::Idle
        };
        drop(session);
        client.set_transaction_status(status);
        client.send(PgWireBackendMessage::CommandComplete(Tag::new("COPY").with_rows(n as usize).into())).await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        user_error(self.session.lock().await.copy_fail(&fail.message))
    }
}

impl PgWireServerHandlers for ConnHandlers {
    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::new(self.clone())
    }

    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(self.clone())
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(self.clone())
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let server_version = self.server.engine.config.server_version.clone();
        let params_of = || {
            let mut p = DefaultServerParameterProvider::default();
            p.server_version = server_version.clone();
            // What SHOW answers for a new session (drivers compare them: Django sets the time
            // zone on every connection when the reported one differs from the one it wants).
            p.time_zone = "UTC".into();
            p.date_style = "ISO, MDY".into();
            p.search_path = "\"$user\", public".into();
            p
        };
        let scram = ScramAuth::new(self.server.auth.clone());
        // On TLS connections SCRAM-SHA-256-PLUS binds the exchange to the certificate.
        let scram_tls = self.server.tls.as_ref().map(|tls| {
            let mut s = ScramAuth::new(self.server.auth.clone());
            if let Err(e) = s.configure_certificate(&tls.cert_pem) {
                tracing::warn!(error = %e, "SCRAM channel binding is off: the certificate was not usable for it");
            }
            SASLAuthStartupHandler::new(Arc::new(params_of())).with_scram(s)
        });
        let cleartext = self
            .server
            .tls
            .as_ref()
            .is_some_and(|t| t.cleartext_over_tls)
            .then(|| CleartextPasswordAuthStartupHandler::new((*self.server.auth).clone(), params_of()));
        Arc::new(BkgStartup {
            scram: SASLAuthStartupHandler::new(Arc::new(params_of())).with_scram(scram),
            cleartext,
            cancel: self.cancel.clone(),
            cancel_key: self.cancel_key.clone(),
            scram_tls,
            tls_required: self.server.tls.as_ref().is_some_and(|t| t.required),
            hook: self.server.auth.0.hook().cloned(),
            server: self.server.clone(),
            slot: self.slot.clone(),
            sasl_started: Default::default(),
        })
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.server.cancel.clone()
    }
}

impl std::fmt::Debug for ConnHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnHandlers").finish()
    }
}

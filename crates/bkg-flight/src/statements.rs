//! Running statements for Flight: leasing the caller's session (or its open transaction's),
//! queries, prepared statements, updates and bulk ingest from DoPut.

use super::*;
use bkg_sql::SqlState;

impl BkgFlight {
    /// A session for `caller`: the transaction's when `txn` names one (it must be the
    /// caller's), else a pooled one with the caller's claims.
    pub(super) async fn lease(&self, caller: &Caller, txn: Option<&[u8]>) -> Result<Lease<'_>, Status> {
        if let Some(id) = txn.filter(|t| !t.is_empty()) {
            let session = {
                let mut txns = self.txns.lock();
                let t = txns.get_mut(id).ok_or_else(|| {
                    status(SqlError::new(codes::NO_ACTIVE_SQL_TRANSACTION, "unknown or finished transaction"))
                })?;
                if t.owner != caller.key {
                    return Err(status(SqlError::new(
                        codes::INSUFFICIENT_PRIVILEGE,
                        "the transaction belongs to another principal",
                    )));
                }
                t.used = Instant::now();
                t.session.clone()
            };
            return Ok(Lease::Txn(session.lock_owned().await));
        }
        let mut session =
            self.sessions.take(&self.engine, &caller.role, self.config.statement_timeout_ms).map_err(status)?;
        session.set_claims(caller.claims.clone());
        Ok(Lease::Pooled(&self.sessions, caller.role.clone(), Some(session)))
    }

    /// Runs a statement that is not a query now (clients only fetch results they expect), with
    /// each parameter row once, and answers with a FlightInfo whose ticket carries its (small)
    /// result and whose total_records is the count of rows it changed.
    pub(super) async fn command_info(
        &self,
        caller: &Caller,
        txn: Option<&[u8]>,
        sql: &str,
        params: &[RecordBatch],
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let ran = self.run_rows(caller, txn, sql, params).await?;
        let batches: Vec<RecordBatch> = ran.stream.try_collect().await.map_err(|e| status(e.into()))?;
        let rows = inline_rows(&ran.schema, &batches).map_err(status)?;
        let body = TicketBody { p: caller.key.clone(), e: self.expiry(), q: None, t: None, r: Some(rows) };
        let info = self.ticket_info(&ran.schema, body, descriptor)?;
        Ok(match ran.changed {
            Some(n) => info.with_total_records(n as i64),
            None => info,
        })
    }

    pub(super) fn one_statement(sql: &str) -> Result<datafusion::sql::sqlparser::ast::Statement, Status> {
        let sql = numbered_placeholders(sql);
        let mut stmts = Session::parse(&sql).map_err(status)?;
        match stmts.len() {
            1 => Ok(stmts.remove(0)),
            0 => Err(status(SqlError::syntax("empty statement"))),
            _ => Err(status(SqlError::syntax("one statement per call"))),
        }
    }

    /// Runs `sql` once per parameter row (once when there are none) on one session of the
    /// caller. A single run's rows stream as the plan produces them; several runs are collected
    /// and follow each other, and the rows they changed add up.
    pub(super) async fn run_rows(
        &self,
        caller: &Caller,
        txn: Option<&[u8]>,
        sql: &str,
        params: &[RecordBatch],
    ) -> Result<Ran, Status> {
        let stmt = Self::one_statement(sql)?;
        let mut lease = self.lease(caller, txn).await?;
        if matches!(lease, Lease::Pooled(..)) {
            refuse_session_state(&stmt)?;
        }
        let session = lease.session();
        let runs: Vec<Option<(&RecordBatch, usize)>> = match params.iter().map(|b| b.num_rows()).sum::<usize>() {
            0 => vec![None],
            _ => params.iter().flat_map(|b| (0..b.num_rows()).map(move |r| Some((b, r)))).collect(),
        };
        let single = runs.len() == 1;
        let (mut schema, mut changed, mut batches) = (None, None, Vec::new());
        for run in runs {
            let mut s = stmt.clone();
            if let Some((b, r)) = run {
                bkg_sql::describe::bind_params(&mut s, &convert::param_exprs(b, r).map_err(status)?).map_err(status)?;
            }
            let out = session.execute_streaming(s).await.map_err(status)?;
            if single {
                return Ok(Ran { schema: out.schema, stream: out.stream, changed: out.rows });
            }
            if let Some(n) = out.rows {
                changed = Some(changed.unwrap_or(0) + n);
            }
            schema.get_or_insert(out.schema);
            batches.extend(out.stream.try_collect::<Vec<_>>().await.map_err(|e| status(e.into()))?);
        }
        let schema: SchemaRef = schema.expect("at least one run");
        Ok(Ran { stream: memory_stream(schema.clone(), batches), schema, changed })
    }

    pub(super) fn prepared_entry<R>(
        &self,
        handle: &[u8],
        caller: &Caller,
        f: impl FnOnce(&mut Prepared) -> R,
    ) -> Result<R, Status> {
        let mut map = self.prepared.lock();
        let p = map.get_mut(handle).ok_or_else(|| {
            status(SqlError::new(
                SqlState::InvalidSqlStatementName,
                "unknown prepared statement handle (closed, expired or never made)",
            ))
        })?;
        if p.owner != caller.key {
            return Err(status(SqlError::new(
                codes::INSUFFICIENT_PRIVILEGE,
                "the prepared statement belongs to another principal",
            )));
        }
        p.used = Instant::now();
        Ok(f(p))
    }

    /// Drops prepared statements and transactions left unused for too long.
    pub(super) fn sweep(&self) {
        let now = Instant::now();
        let ttl = self.config.idle_ttl;
        self.prepared.lock().retain(|_, p| now.duration_since(p.used) < ttl);
        self.txns.lock().retain(|_, t| now.duration_since(t.used) < ttl);
    }

    pub(super) async fn ingest(
        &self,
        caller: &Caller,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        if cmd.temporary {
            return Err(status(SqlError::unsupported("temporary tables")));
        }
        if cmd.catalog.as_deref().is_some_and(|c| c != DATABASE_NAME) {
            return Err(status(SqlError::new(
                SqlState::InvalidCatalogName,
                format!("database \"{}\" does not exist", cmd.catalog.unwrap_or_default()),
            )));
        }
        let opts = cmd.table_definition_options.unwrap_or_default();
        let if_not_exist = TableNotExistOption::try_from(opts.if_not_exist).unwrap_or(TableNotExistOption::Unspecified);
        let if_exists = TableExistsOption::try_from(opts.if_exists).unwrap_or(TableExistsOption::Unspecified);
        let txn = cmd.transaction_id.clone();
        let mut lease = self.lease(caller, txn.as_deref()).await?;
        let session = lease.session();
        let schema_name = cmd.schema.clone().unwrap_or_else(|| session.current_schema());
        let qualified = format!("{}.{}", convert::quote_ident(&schema_name), convert::quote_ident(&cmd.table));
        // One transaction: the table's creation and every row, or nothing.
        let own = !session.in_transaction();
        if own {
            session.execute_one("BEGIN").await.map_err(status)?;
        }
        let r = self.ingest_rows(session, &schema_name, &cmd.table, &qualified, if_not_exist, if_exists, request).await;
        match r {
            Ok(n) => {
                if own {
                    session.execute_one("COMMIT").await.map_err(status)?;
                }
                Ok(n)
            }
            Err(e) => {
                if own {
                    let _ = session.execute_one("ROLLBACK").await;
                }
                Err(status(e))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn ingest_rows(
        &self,
        session: &mut Session,
        schema_name: &str,
        table: &str,
        qualified: &str,
        if_not_exist: TableNotExistOption,
        if_exists: TableExistsOption,
        request: Request<PeekableFlightDataStream>,
    ) -> SqlResult<i64> {
        let reset = request.extensions().get::<reset::BodyReset>().cloned();
        let stream = data_messages(request.into_inner());
        let mut decoded = FlightRecordBatchStream::new_from_flight_data(stream);
        let first = decoded
            .next()
            .await
            .transpose()
            .map_err(|e| SqlError::new(codes::PROTOCOL_VIOLATION, format!("malformed Arrow data: {e}")))?;
        let incoming: SchemaRef = match (&first, decoded.schema()) {
            (Some(b), _) => b.schema(),
            (None, Some(s)) => s.clone(),
            (None, None) => {
                return Err(SqlError::new(codes::PROTOCOL_VIOLATION, "the ingest stream carries no schema"));
            }
        };
        let find = |s: &Session| s.with_txn(|t| Ok(t.catalog().find_table(schema_name, table).cloned()));
        let exists = find(session)?.is_some();
        match (exists, if_exists, if_not_exist) {
            (true, TableExistsOption::Append, _) => {}
            (true, TableExistsOption::Replace, _) => {
                session.execute_one(&format!("DROP TABLE {qualified}")).await?;
                session.execute_one(&convert::create_table_sql(qualified, incoming.fields())?).await?;
            }
            (true, _, _) => {
                return Err(SqlError::new(codes::DUPLICATE_TABLE, format!("relation \"{table}\" already exists"))
                    .with_hint("Ingest with mode append or replace."));
            }
            (false, _, TableNotExistOption::Create) => {
                session.execute_one(&convert::create_table_sql(qualified, incoming.fields())?).await?;
            }
            (false, _, _) => {
                return Err(SqlError::new(codes::UNDEFINED_TABLE, format!("relation \"{table}\" does not exist")));
            }
        }
        let def = find(session)?.ok_or_else(|| SqlError::internal("the ingested table vanished"))?;
        session.require_relation(def.id, bkg_kernel::privilege::INSERT)?;
        // The stream's columns by name.
        let target: Vec<usize> = incoming
            .fields()
            .iter()
            .map(|f| {
                def.column_index(f.name()).ok_or_else(|| {
                    SqlError::new(
                        codes::UNDEFINED_COLUMN,
                        format!("column \"{}\" of relation \"{table}\" does not exist", f.name()),
                    )
                    .with_hint("The ingested batches must use the table's column names.")
                })
            })
            .collect::<SqlResult<_>>()?;
        let mut total = 0i64;
        let mut next = first;
        while let Some(batch) = next {
            if batch.schema().fields() != incoming.fields() {
                return Err(SqlError::new(codes::DATATYPE_MISMATCH, "the batches of one ingest must share one schema"));
            }
            total += bkg_sql::dml::insert_batches(session, def.id, Some(target.clone()), &[batch]).await? as i64;
            next = decoded
                .next()
                .await
                .transpose()
                .map_err(|e| SqlError::new(codes::PROTOCOL_VIOLATION, format!("malformed Arrow data: {e}")))?;
        }
        ended_cleanly(reset.as_ref())?;
        Ok(total)
    }
}

pub(crate) fn schema_ipc(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(b) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| status(e.into()))?;
    Ok(b)
}

pub(crate) type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

pub(crate) fn flight_stream(
    schema: SchemaRef,
    batches: datafusion::execution::SendableRecordBatchStream,
) -> DoGetStream {
    let stream = batches.map_err(|e| FlightError::ExternalError(Box::new(SqlError::from(e))));
    let encoded = FlightDataEncoderBuilder::new().with_schema(schema).build(stream);
    Box::pin(encoded.map_err(flight_status))
}

/// The Arrow messages of a DoPut: a message carrying only the descriptor (as clients send for
/// an update without parameters) holds no data.
pub(crate) fn data_messages(
    stream: PeekableFlightDataStream,
) -> impl Stream<Item = Result<arrow_flight::FlightData, FlightError>> + Send {
    stream.map_err(FlightError::from).try_filter(|d| futures::future::ready(!d.data_header.is_empty()))
}

/// Reads the record batches of a DoPut.
pub(crate) async fn put_batches(request: Request<PeekableFlightDataStream>) -> Result<Vec<RecordBatch>, Status> {
    let reset = request.extensions().get::<reset::BodyReset>().cloned();
    let stream = data_messages(request.into_inner());
    let mut decoded = FlightRecordBatchStream::new_from_flight_data(stream);
    let mut out = Vec::new();
    while let Some(b) = decoded.next().await {
        out.push(b.map_err(|e| invalid(format!("malformed Arrow data: {e}")))?);
    }
    ended_cleanly(reset.as_ref()).map_err(status)?;
    Ok(out)
}

/// A DoPut stream that ended because the client reset it (see [`reset`]) was abandoned, not
/// finished: what came of it must not be used.
pub(crate) fn ended_cleanly(reset: Option<&reset::BodyReset>) -> SqlResult<()> {
    if reset.is_some_and(reset::BodyReset::is_set) {
        return Err(SqlError::new(codes::QUERY_CANCELED, "the client cancelled the upload before its end"));
    }
    Ok(())
}

/// Flight SQL clients write parameters as `?` (JDBC style); PostgreSQL numbers them. Each `?`
/// token becomes `$1`, `$2`, … in order; text in literals, identifiers and comments is kept.
pub(crate) fn numbered_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    if !sql.contains('?') {
        return sql.into();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else { return sql.into() };
    let is_mark = |t: &Token| matches!(t, Token::Question) || matches!(t, Token::Placeholder(p) if p == "?");
    if !tokens.iter().any(is_mark) {
        return sql.into();
    }
    let mut n = 0;
    let mut out = String::with_capacity(sql.len() + 8);
    for t in &tokens {
        if is_mark(t) {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push_str(&t.to_string());
        }
    }
    out.into()
}

/// A finished statement's rows as ticket payload (Arrow IPC stream, base64).
pub(crate) fn inline_rows(schema: &SchemaRef, batches: &[RecordBatch]) -> SqlResult<String> {
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut buf, schema)?;
        for b in batches {
            w.write(b)?;
            if w.get_ref().len() > INLINE_RESULT_MAX {
                return Err(SqlError::new(
                    SqlState::ProgramLimitExceeded,
                    "the statement's result is too large to return here; run it as a query",
                ));
            }
        }
        w.finish()?;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

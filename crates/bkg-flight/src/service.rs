//! The Flight SQL service: each RPC mapped onto authentication, statements and metadata.

use super::*;
use bkg_sql::SqlState;

impl BkgFlight {
    pub(super) fn visible<'a>(&self, cat: &'a bkg_kernel::Catalog, caller: &Caller) -> metadata::Visible<'a> {
        // An unknown role sees nothing (oid 0 holds no privileges).
        let role = cat.find_role(&caller.role).map(|r| r.oid).unwrap_or(0);
        metadata::Visible { cat, role }
    }

    /// A metadata command's FlightInfo: the command itself is the ticket.
    pub(super) fn metadata_info(
        &self,
        cmd: Any,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(cmd.encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| status(e.into()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    pub(super) fn metadata_stream(&self, batch: Result<RecordBatch, Status>) -> Result<Response<DoGetStream>, Status> {
        let batch = batch?;
        let schema = batch.schema();
        Ok(Response::new(flight_stream(schema.clone(), memory_stream(schema, vec![batch]))))
    }
}

#[tonic::async_trait]
impl FlightSqlService for BkgFlight {
    type FlightService = BkgFlight;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("the handshake needs authorization: Basic <user:password>"))?;
        let caller = match header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")) {
            Some(b) => self.password_login(b.trim())?,
            // A JWT is its own bearer token: hand it back.
            None => self.caller(request.metadata())?,
        };
        let token = match caller.claims {
            None => self.issue_token(&caller.role),
            Some(_) => header.trim_start_matches("Bearer ").trim_start_matches("bearer ").trim().to_string(),
        };
        let payload = Bytes::from(token.clone());
        let output = futures::stream::iter(vec![Ok(HandshakeResponse { protocol_version: 0, payload })]);
        let mut resp: Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>> =
            Response::new(Box::pin(output));
        let value = format!("Bearer {token}").parse().map_err(|_| Status::internal("token header"))?;
        resp.metadata_mut().insert("authorization", value);
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(request.metadata())?;
        let stmt = Self::one_statement(&query.query)?;
        let descriptor = request.into_inner();
        if !matches!(stmt, datafusion::sql::sqlparser::ast::Statement::Query(_)) {
            let info =
                self.command_info(&caller, query.transaction_id.as_deref(), &query.query, &[], descriptor).await?;
            return Ok(Response::new(info));
        }
        let described = {
            let mut lease = self.lease(&caller, query.transaction_id.as_deref()).await?;
            lease.session().describe(&stmt).await.map_err(status)?
        };
        let schema = described.schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let txn = query.transaction_id.as_deref().filter(|t| !t.is_empty()).map(hex_of);
        let body = TicketBody { p: caller.key.clone(), e: self.expiry(), q: Some(query.query), t: txn, r: None };
        Ok(Response::new(self.ticket_info(&schema, body, descriptor)?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let body = self.open_ticket(&ticket.statement_handle, &caller)?;
        if let Some(rows) = body.r {
            let bytes =
                base64::engine::general_purpose::STANDARD.decode(rows).map_err(|_| invalid("invalid ticket"))?;
            let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
                .map_err(|e| status(e.into()))?;
            let schema = reader.schema();
            let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| status(e.into()))?;
            return Ok(Response::new(flight_stream(schema.clone(), memory_stream(schema, batches))));
        }
        let sql = body.q.ok_or_else(|| invalid("invalid ticket"))?;
        let txn = body.t.as_deref().map(unhex).transpose().map_err(|_| invalid("invalid ticket"))?;
        let ran = self.run_rows(&caller, txn.as_deref(), &sql, &[]).await?;
        Ok(Response::new(flight_stream(ran.schema, ran.stream)))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(request.metadata())?;
        let (schema, is_query, sql, txn, params) =
            self.prepared_entry(&cmd.prepared_statement_handle, &caller, |p| {
                (p.dataset.clone(), p.is_query, p.sql.clone(), p.transaction.clone(), p.params.clone())
            })?;
        if !is_query {
            let params = params.as_slice();
            let info = self.command_info(&caller, txn.as_deref(), &sql, params, request.into_inner()).await?;
            return Ok(Response::new(info));
        }
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(cmd.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| status(e.into()))?
            .with_endpoint(endpoint)
            .with_descriptor(request.into_inner())
            .with_ordered(true);
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let (sql, txn, params) = self.prepared_entry(&cmd.prepared_statement_handle, &caller, |p| {
            (p.sql.clone(), p.transaction.clone(), p.params.clone())
        })?;
        let ran = self.run_rows(&caller, txn.as_deref(), &sql, params.as_slice()).await?;
        Ok(Response::new(flight_stream(ran.schema, ran.stream)))
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(request.metadata())?;
        let ran = self.run_rows(&caller, cmd.transaction_id.as_deref(), &cmd.query, &[]).await?;
        Ok(ran.changed.unwrap_or(0) as i64)
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(request.metadata())?;
        self.ingest(&caller, cmd, request).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = self.caller(request.metadata())?;
        // Checked before reading the data, so a stranger's handle learns nothing.
        self.prepared_entry(&cmd.prepared_statement_handle, &caller, |_| ())?;
        let batches = put_batches(request).await?;
        let params = match batches.as_slice() {
            [] => None,
            [b] => Some(b.clone()),
            many => Some(
                datafusion::arrow::compute::concat_batches(&many[0].schema(), many).map_err(|e| status(e.into()))?,
            ),
        };
        self.prepared_entry(&cmd.prepared_statement_handle, &caller, |p| p.params = params)?;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(cmd.prepared_statement_handle) })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(request.metadata())?;
        let (sql, txn, stored) = self.prepared_entry(&cmd.prepared_statement_handle, &caller, |p| {
            (p.sql.clone(), p.transaction.clone(), p.params.clone())
        })?;
        let mut params = put_batches(request).await?;
        if params.iter().all(|b| b.num_rows() == 0) {
            params = stored.into_iter().collect();
        }
        let ran = self.run_rows(&caller, txn.as_deref(), &sql, &params).await?;
        Ok(ran.changed.unwrap_or(0) as i64)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.caller(request.metadata())?;
        self.sweep();
        let stmt = Self::one_statement(&query.query)?;
        let described = {
            let mut lease = self.lease(&caller, query.transaction_id.as_deref()).await?;
            lease.session().describe(&stmt).await.map_err(status)?
        };
        let dataset = described.schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let nparams = bkg_sql::describe::count_placeholders(&stmt).max(described.params.len());
        let param_fields: Vec<Field> = (0..nparams)
            .map(|i| {
                let dt = described.params.get(i).cloned().flatten().unwrap_or(ArrowType::Utf8);
                Field::new(format!("${}", i + 1), dt, true)
            })
            .collect();
        let handle: [u8; 16] = rand::random();
        {
            let mut map = self.prepared.lock();
            if map.len() >= PREPARED_MAX {
                return Err(status(SqlError::new(
                    SqlState::ConfigurationLimitExceeded,
                    format!("too many prepared statements (at most {PREPARED_MAX}); close some"),
                )));
            }
            map.insert(
                handle.to_vec(),
                Prepared {
                    owner: caller.key.clone(),
                    sql: query.query,
                    is_query: matches!(stmt, datafusion::sql::sqlparser::ast::Statement::Query(_)),
                    transaction: query.transaction_id.map(|t| t.to_vec()).filter(|t| !t.is_empty()),
                    dataset: dataset.clone(),
                    params: None,
                    used: Instant::now(),
                },
            );
        }
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Bytes::from(handle.to_vec()),
            dataset_schema: schema_ipc(&dataset)?,
            parameter_schema: schema_ipc(&Schema::new(param_fields))?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(request.metadata())?;
        self.prepared_entry(&query.prepared_statement_handle, &caller, |_| ())?;
        self.prepared.lock().remove(query.prepared_statement_handle.as_ref());
        Ok(())
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let caller = self.caller(request.metadata())?;
        self.sweep();
        let mut session =
            self.sessions.take(&self.engine, &caller.role, self.config.statement_timeout_ms).map_err(status)?;
        session.set_claims(caller.claims.clone());
        session.execute_one("BEGIN").await.map_err(status)?;
        let id: [u8; 16] = rand::random();
        let mut txns = self.txns.lock();
        if txns.len() >= TRANSACTIONS_MAX {
            return Err(status(SqlError::new(
                codes::TOO_MANY_CONNECTIONS,
                format!("too many open Flight transactions (at most {TRANSACTIONS_MAX})"),
            )));
        }
        txns.insert(
            id.to_vec(),
            OpenTxn { owner: caller.key, session: Arc::new(tokio::sync::Mutex::new(session)), used: Instant::now() },
        );
        Ok(ActionBeginTransactionResult { transaction_id: Bytes::from(id.to_vec()) })
    }

    async fn do_action_end_transaction(
        &self,
        query: ActionEndTransactionRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(request.metadata())?;
        let sql = match EndTransaction::try_from(query.action) {
            Ok(EndTransaction::Commit) => "COMMIT",
            Ok(EndTransaction::Rollback) => "ROLLBACK",
            _ => return Err(invalid("end transaction: action must be commit or rollback")),
        };
        let mut lease = self.lease(&caller, Some(&query.transaction_id)).await?;
        self.txns.lock().remove(query.transaction_id.as_ref());
        let out = lease.session().execute_one(sql).await.map_err(status)?;
        if sql == "COMMIT" && out.tag_text() == "ROLLBACK" {
            return Err(status(SqlError::new(
                codes::IN_FAILED_TRANSACTION,
                "the transaction had failed and was rolled back",
            )));
        }
        Ok(())
    }

    /// A savepoint in an open transaction: its id is the transaction's, then 8 random bytes
    /// naming the SQL savepoint (`SAVEPOINT flight_sp_<hex>`), so ending it needs no state here.
    async fn do_action_begin_savepoint(
        &self,
        query: ActionBeginSavepointRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        let caller = self.caller(request.metadata())?;
        if query.transaction_id.is_empty() {
            return Err(status(SqlError::new(
                codes::NO_ACTIVE_SQL_TRANSACTION,
                "a savepoint needs a transaction (BeginTransaction first)",
            )));
        }
        let mut lease = self.lease(&caller, Some(&query.transaction_id)).await?;
        let tag: [u8; 8] = rand::random();
        let name = savepoint_name(&tag);
        lease.session().execute_one(&format!("SAVEPOINT {name}")).await.map_err(status)?;
        let mut id = query.transaction_id.to_vec();
        id.extend_from_slice(&tag);
        Ok(ActionBeginSavepointResult { savepoint_id: Bytes::from(id) })
    }

    /// RELEASE or ROLLBACK TO a savepoint made by [`do_action_begin_savepoint`].
    async fn do_action_end_savepoint(
        &self,
        query: ActionEndSavepointRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(request.metadata())?;
        let id = query.savepoint_id.as_ref();
        if id.len() <= 8 {
            return Err(invalid("end savepoint: not a savepoint id"));
        }
        let (txn, tag) = id.split_at(id.len() - 8);
        let name = savepoint_name(tag);
        // EndSavepoint (not re-exported by arrow-flight): 1 RELEASE, 2 ROLLBACK.
        let sql = match query.action {
            1 => format!("RELEASE SAVEPOINT {name}"),
            2 => format!("ROLLBACK TO SAVEPOINT {name}"),
            _ => return Err(invalid("end savepoint: action must be release or rollback")),
        };
        let mut lease = self.lease(&caller, Some(txn)).await?;
        lease.session().execute_one(&sql).await.map_err(status)?;
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        self.metadata_info(query.as_any(), &query.into_builder().schema(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(request.metadata())?;
        let mut b = query.into_builder();
        b.append(DATABASE_NAME);
        self.metadata_stream(b.build().map_err(flight_status))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let cat = self.engine.catalog();
        let v = self.visible(&cat, &caller);
        self.metadata_stream(metadata::db_schemas(&v, query).map_err(status))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let cat = self.engine.catalog();
        let v = self.visible(&cat, &caller);
        self.metadata_stream(metadata::tables(&v, query).map_err(status))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        self.metadata_info(query.as_any(), &query.into_builder().schema(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(request.metadata())?;
        let mut b = query.into_builder();
        b.append("TABLE");
        b.append("VIEW");
        self.metadata_stream(b.build().map_err(flight_status))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.metadata_info(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(request.metadata())?;
        self.metadata_stream(query.into_builder(&self.sql_info).build().map_err(flight_status))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        self.metadata_info(query.as_any(), &metadata::primary_keys_schema(), request.into_inner())
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let cat = self.engine.catalog();
        let v = self.visible(&cat, &caller);
        self.metadata_stream(metadata::primary_keys(&v, &query, "public").map_err(status))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.into_builder(&self.xdbc).schema();
        self.metadata_info(query.as_any(), &schema, request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(request.metadata())?;
        self.metadata_stream(query.into_builder(&self.xdbc).build().map_err(flight_status))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

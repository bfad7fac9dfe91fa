//! Queries: the point-query fast path, planning through DataFusion, and result streams.

use super::*;
use tracing::Instrument;

impl Session {
    /// Runs a prepared point query from its cached plan, in the transaction a statement would
    /// use. `None` when the plan does not apply any more (the catalog changed, or the session
    /// is in a failed transaction): the caller then runs the statement the normal way.
    pub fn execute_point(
        &mut self,
        plan: &crate::fast_path::PointPlan,
        param: &dyn Fn(usize, &bkg_kernel::DataType) -> SqlResult<bkg_kernel::Value>,
    ) -> Option<SqlResult<Output>> {
        self.end_interrupted_block();
        if self.failed || self.pending_copy.is_some() {
            return None;
        }
        let implicit = self.start_statement();
        // A transaction that ran DDL has a private catalog whose version has not moved yet.
        let version = self.txn.lock().as_ref().filter(|t| !t.ran_ddl()).map(|t| t.catalog().version);
        if version != Some(plan.catalog_version) {
            if implicit {
                self.end_internal();
            }
            return None;
        }
        if self.rls_restricts(&plan.def) {
            // The plan was made for another principal (SET ROLE since): plan it normally.
            if implicit {
                self.end_internal();
            }
            return None;
        }
        self.last_active = std::time::Instant::now();
        let r = crate::fast_path::run_point(self, plan, param);
        if implicit {
            // Read only: nothing to commit.
            self.end_internal();
        } else if r.is_err() {
            self.on_error();
        }
        self.last_active = std::time::Instant::now();
        Some(r)
    }

    /// Plans a query for running: the physical plan with the state to run it in and its output
    /// schema under PostgreSQL's column names, or the finished answer when no plan is needed
    /// (the point fast path, provably empty catalog queries).
    pub(super) async fn plan_query(&mut self, mut stmt: Statement) -> SqlResult<Planned> {
        self.sync_view();
        if let Statement::Query(q) = &stmt
            && let Some(names) = crate::pg_catalog::provably_empty(q, &self.view.get())
        {
            let fields: Vec<Field> = names.iter().map(|n| Field::new(n, ArrowType::Utf8, true)).collect();
            let schema = Arc::new(Schema::new(fields));
            return Ok(Planned::Done(Output::Rows { schema, batches: vec![], tag: "SELECT".into() }));
        }
        if let Statement::Query(q) = &stmt
            && let Some(out) = crate::fast_path::point_select(self, q)?
        {
            return Ok(Planned::Done(out));
        }
        crate::pg_catalog::rewrite(&mut stmt, &self.view.get(), &self.current_schema())?;
        crate::output_names::assign(&mut stmt);
        let state = self.statement_state();
        let plan = state.statement_to_plan(DFStatement::Statement(Box::new(stmt))).await?;
        self.check_plan_privileges(&plan)?;
        // The principal the statement's scans enforce, built once by statement_state.
        let security = state.config().get_extension::<ScanContext>().map(|c| c.security.clone());
        let security = security.unwrap_or_else(|| Arc::new(self.security()));
        let plan = crate::policy::rewrite_plan(&state, &security, plan)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        // The scans read their snapshot here, while the transaction is open.
        let physical = state.create_physical_plan(&plan).await?;
        *self.view.planner.write() = None;
        let schema = crate::output_names::restore(&physical.schema());
        Ok(Planned::Plan { physical, schema, state })
    }

    /// Plans and runs a query through DataFusion.
    pub async fn query(&mut self, stmt: Statement) -> SqlResult<Output> {
        let plan_span = tracing::debug_span!(target: crate::telemetry::SPAN_TARGET, "sql.plan");
        let (physical, schema, state) = match crate::in_span!(plan_span, self.plan_query(stmt))? {
            Planned::Done(out) => return Ok(out),
            Planned::Plan { physical, schema, state } => (physical, schema, state),
        };
        let run_span = tracing::debug_span!(target: crate::telemetry::SPAN_TARGET, "sql.execute");
        let batches = datafusion::physical_plan::collect(physical, state.task_ctx()).instrument(run_span).await?;
        let batches = batches.into_iter().map(|b| rename_batch(&schema, b)).collect::<Result<_, _>>()?;
        Ok(Output::Rows { schema, batches, tag: "SELECT".into() })
    }

    /// Runs one statement and hands its rows over as a stream. A query is planned (its scans
    /// take their snapshot) and then runs batch by batch as the consumer pulls, under the
    /// statement timeout; any other statement runs to completion first. The transaction
    /// rules are those of [`execute_statement`](Self::execute_statement).
    pub async fn execute_streaming(&mut self, stmt: Statement) -> SqlResult<StatementStream> {
        // A query with a locking clause runs to completion first too: its rows are locked as
        // they come, and it may wait for a lock and run again.
        if !matches!(&stmt, Statement::Query(q) if q.locks.is_empty()) || self.failed {
            return match self.execute_statement(stmt).await? {
                Output::CopyIn { .. } => {
                    Err(self.copy_fail("COPY FROM STDIN needs the PostgreSQL protocol; use bulk ingest"))
                }
                out => Ok(StatementStream::from_output(out)),
            };
        }
        self.end_interrupted_block();
        self.last_active = std::time::Instant::now();
        let started = std::time::Instant::now();
        let timeout = self.statement_timeout();
        let implicit = self.start_statement();
        let plan_span = tracing::debug_span!(target: crate::telemetry::SPAN_TARGET, "sql.plan");
        let planned = crate::in_span!(plan_span, interruptible(timeout, self.cancel.clone(), self.plan_query(stmt)));
        // A query writes nothing: an implicit transaction ends once the scans hold their data.
        if implicit {
            self.end_internal();
        }
        self.last_active = std::time::Instant::now();
        let (physical, schema, state) = match planned {
            Ok(Planned::Done(out)) => return Ok(StatementStream::from_output(out)),
            Ok(Planned::Plan { physical, schema, state }) => (physical, schema, state),
            Err(e) => {
                self.on_error();
                return Err(e);
            }
        };
        // The rows are made as the consumer pulls them: the span is entered at every pull and
        // ends when the stream is dropped.
        let run_span = tracing::debug_span!(target: crate::telemetry::SPAN_TARGET, "sql.execute");
        let stream = run_span.in_scope(|| datafusion::physical_plan::execute_stream(physical, state.task_ctx()))?;
        let stream = crate::telemetry::InSpan { span: run_span, inner: stream };
        let out_schema = schema.clone();
        let deadline = timeout.map(|t| started + t);
        let stream = futures::StreamExt::map(stream, move |b| {
            if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                return Err(datafusion::error::DataFusionError::External(Box::new(SqlError::new(
                    codes::QUERY_CANCELED,
                    "canceling statement due to statement timeout",
                ))));
            }
            Ok(rename_batch(&out_schema, b?)?)
        });
        let stream = Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema.clone(), stream));
        Ok(StatementStream { schema, stream, rows: None })
    }

    /// Plans and runs SQL text that must be a query (used by DML for its row-selecting part).
    pub async fn query_sql(&mut self, sql: &str) -> SqlResult<(SchemaRef, Vec<RecordBatch>)> {
        let mut stmts = Session::parse(sql)?;
        if stmts.len() != 1 {
            return Err(SqlError::internal("internal query must be one statement"));
        }
        match self.query(stmts.remove(0)).await? {
            Output::Rows { schema, batches, .. } => Ok((schema, batches)),
            _ => Err(SqlError::internal("internal query returned no rows")),
        }
    }
}

pub(super) enum Planned {
    Done(Output),
    Plan { physical: Arc<dyn datafusion::physical_plan::ExecutionPlan>, schema: SchemaRef, state: SessionState },
}

/// A batch under the output schema's names (the plan's internal names may differ).
pub(super) fn rename_batch(
    schema: &SchemaRef,
    b: RecordBatch,
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    if Arc::ptr_eq(schema, &b.schema()) {
        return Ok(b);
    }
    RecordBatch::try_new_with_options(
        schema.clone(),
        b.columns().to_vec(),
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
    )
}

/// The rows of one statement as a stream (see [`Session::execute_streaming`]).
pub struct StatementStream {
    pub schema: SchemaRef,
    pub stream: datafusion::execution::SendableRecordBatchStream,
    /// Rows a command changed, when it counts them.
    pub rows: Option<u64>,
}

impl StatementStream {
    fn from_output(out: Output) -> StatementStream {
        let (schema, batches, rows) = match out {
            Output::Rows { schema, batches, .. } | Output::CopyOut { schema, batches, .. } => (schema, batches, None),
            Output::Command { rows, .. } => (Arc::new(Schema::empty()), vec![], rows),
            Output::CopyIn { .. } => (Arc::new(Schema::empty()), vec![], None),
        };
        StatementStream { stream: memory_stream(schema.clone(), batches), schema, rows }
    }
}

/// Batches already in memory as a record batch stream.
pub fn memory_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> datafusion::execution::SendableRecordBatchStream {
    let stream = futures::stream::iter(batches.into_iter().map(Ok));
    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream))
}

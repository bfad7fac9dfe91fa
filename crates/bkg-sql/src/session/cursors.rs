//! Cursors: `DECLARE name [NO SCROLL] CURSOR [WITH HOLD | WITHOUT HOLD] FOR query`, `FETCH`,
//! `MOVE`, `CLOSE` (psycopg's and psycopg2's named cursors, SQLAlchemy's `stream_results`,
//! Django's `.iterator()`).
//!
//! A cursor is its query's plan, started at DECLARE (its scans take their snapshot then) and
//! pulled as FETCH asks for rows: a large result is never held whole. Cursors scan forward only
//! (`SCROLL`, `BACKWARD`, `PRIOR`, `FIRST`, `LAST` and going back with `ABSOLUTE`/`RELATIVE` give
//! 55000 or 0A000). A cursor WITHOUT HOLD ends with its transaction; one WITH HOLD outlives the
//! COMMIT of the transaction that declared it (its rows come from the snapshot of the DECLARE)
//! and goes with that transaction's ROLLBACK. ROLLBACK TO a savepoint closes the cursors
//! declared since.

use super::*;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

/// Open cursors one session may have.
pub const CURSORS_MAX: usize = 256;

/// `FETCH … INTO` this name is how `MOVE` reaches the FETCH code (the parser has no MOVE).
pub(super) const MOVE_MARKER: &str = "__bkg_move";

pub(super) struct Cursor {
    stream: SendableRecordBatchStream,
    schema: SchemaRef,
    /// Rows pulled from the stream and not yet fetched.
    pending: Option<RecordBatch>,
    hold: bool,
    /// Declared by the open transaction block (its ROLLBACK closes the cursor even WITH HOLD).
    this_block: bool,
    /// Rows fetched or moved over so far.
    position: u64,
    done: bool,
}

fn no_cursor(name: &str) -> SqlError {
    SqlError::new(SqlState::InvalidCursorName, format!("cursor \"{name}\" does not exist"))
}

fn forward_only() -> SqlError {
    SqlError::new(SqlState::ObjectNotInPrerequisiteState, "cursor can only scan forward")
        .with_hint("Cursors here scan forward only; fetch the rows again with a new cursor.")
}

impl Session {
    /// `DECLARE … CURSOR … FOR query`.
    pub(super) async fn declare_cursor(&mut self, mut stmts: Vec<ast::Declare>) -> SqlResult<Output> {
        let (Some(d), true) = (stmts.pop(), stmts.is_empty()) else {
            return Err(SqlError::unsupported("DECLARE of several names"));
        };
        let (Some(ast::DeclareType::Cursor), Some(query), [name]) = (&d.declare_type, d.for_query, d.names.as_slice())
        else {
            return Err(SqlError::unsupported("DECLARE other than of a cursor"));
        };
        let name = crate::ddl::ident_name(name);
        let hold = d.hold == Some(true);
        if !hold {
            self.require_block("DECLARE CURSOR")?;
        }
        if d.scroll == Some(true) {
            return Err(SqlError::unsupported("SCROLL cursors (cursors scan forward only)"));
        }
        if d.binary == Some(true) {
            return Err(SqlError::unsupported("BINARY cursors (fetch with the extended protocol's binary format)"));
        }
        if !query.locks.is_empty() {
            return Err(SqlError::unsupported("cursors with FOR UPDATE/FOR SHARE"));
        }
        if self.cursors.contains_key(&name) {
            return Err(SqlError::new(SqlState::DuplicateCursor, format!("cursor \"{name}\" already exists")));
        }
        if self.cursors.len() >= CURSORS_MAX {
            return Err(SqlError::new(
                SqlState::ProgramLimitExceeded,
                format!("a session may have at most {CURSORS_MAX} open cursors"),
            )
            .with_hint("CLOSE the cursors it no longer reads."));
        }
        let implicit = self.start_statement();
        let timeout = self.statement_timeout();
        let planned = interruptible(timeout, self.cancel.clone(), self.plan_query(Statement::Query(query))).await;
        // The scans hold their snapshot's rows now: the stream goes on without the transaction.
        if implicit {
            self.end_internal();
        }
        let (stream, schema) = match planned? {
            super::plan::Planned::Done(out) => match out {
                Output::Rows { schema, batches, .. } => (super::plan::memory_stream(schema.clone(), batches), schema),
                _ => return Err(SqlError::internal("a cursor's query gave no rows")),
            },
            super::plan::Planned::Plan { physical, schema, state } => {
                let stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())?;
                (stream, schema)
            }
        };
        let this_block = self.explicit;
        self.cursors.insert(name, Cursor { stream, schema, pending: None, hold, this_block, position: 0, done: false });
        Ok(Output::command("DECLARE CURSOR"))
    }

    /// `FETCH [direction] {FROM | IN} name`, and `MOVE` (rewritten as FETCH … INTO the marker).
    pub(super) async fn fetch_cursor(
        &mut self,
        name: &ast::Ident,
        direction: &ast::FetchDirection,
        into: Option<&ast::ObjectName>,
    ) -> SqlResult<Output> {
        let moving = match into {
            None => false,
            Some(n) if n.to_string() == MOVE_MARKER => true,
            Some(_) => return Err(SqlError::unsupported("FETCH … INTO")),
        };
        let name = crate::ddl::ident_name(name);
        let position = self.cursors.get(&name).ok_or_else(|| no_cursor(&name))?.position;
        let number = |v: &ast::ValueWithSpan| -> SqlResult<i64> {
            match &v.value {
                ast::Value::Number(n, _) => {
                    n.parse().map_err(|_| SqlError::new(codes::SYNTAX_ERROR, format!("invalid row count \"{n}\"")))
                }
                other => Err(SqlError::syntax(format!("invalid row count {other}"))),
            }
        };
        // (rows to skip first, rows to return)
        let (skip, take): (u64, u64) = match direction {
            ast::FetchDirection::Next | ast::FetchDirection::Forward { limit: None } => (0, 1),
            ast::FetchDirection::All | ast::FetchDirection::ForwardAll => (0, u64::MAX),
            ast::FetchDirection::Count { limit } | ast::FetchDirection::Forward { limit: Some(limit) } => {
                match number(limit)? {
                    n if n >= 0 => (0, n as u64),
                    _ => return Err(forward_only()),
                }
            }
            ast::FetchDirection::Relative { limit } => match number(limit)? {
                n if n >= 1 => (n as u64 - 1, 1),
                _ => return Err(forward_only()),
            },
            ast::FetchDirection::Absolute { limit } => match number(limit)? {
                n if n >= 1 && n as u64 > position => (n as u64 - position - 1, 1),
                _ => return Err(forward_only()),
            },
            _ => return Err(forward_only()),
        };
        let timeout = self.statement_timeout();
        let cancel = self.cancel.clone();
        let cursor = self.cursors.get_mut(&name).ok_or_else(|| no_cursor(&name))?;
        let skipped = interruptible(timeout, cancel.clone(), cursor.pull(skip, true)).await?.1;
        let (batches, n) = interruptible(timeout, cancel, cursor.pull(take, moving)).await?;
        cursor.position += skipped + n;
        if moving {
            return Ok(Output::count("MOVE", skipped + n));
        }
        Ok(Output::Rows { schema: cursor.schema.clone(), batches, tag: "FETCH".into() })
    }

    /// `CLOSE name` / `CLOSE ALL`.
    pub(super) fn close_cursor(&mut self, which: &ast::CloseCursor) -> SqlResult<Output> {
        match which {
            ast::CloseCursor::All => self.cursors.clear(),
            ast::CloseCursor::Specific { name } => {
                let name = crate::ddl::ident_name(name);
                self.cursors.remove(&name).ok_or_else(|| no_cursor(&name))?;
            }
        }
        Ok(Output::command("CLOSE CURSOR"))
    }

    /// The columns a FETCH from cursor `name` returns (for a Describe).
    pub fn cursor_schema(&self, name: &ast::Ident) -> Option<SchemaRef> {
        self.cursor_schema_named(&crate::ddl::ident_name(name))
    }

    /// As [`cursor_schema`](Self::cursor_schema), for the cursor's exact name (a protocol-level
    /// Describe of the portal the cursor is).
    pub fn cursor_schema_named(&self, name: &str) -> Option<SchemaRef> {
        self.cursors.get(name).map(|c| c.schema.clone())
    }

    /// The transaction block ended: cursors without hold go, and a ROLLBACK takes those the
    /// block declared with hold too; the others outlive it.
    pub(super) fn end_block_cursors(&mut self, committed: bool) {
        self.cursors.retain(|_, c| c.hold && (committed || !c.this_block));
        for c in self.cursors.values_mut() {
            c.this_block = false;
        }
    }
}

impl Cursor {
    /// Pulls up to `n` rows; returns them (unless `discard`) and how many there were.
    async fn pull(&mut self, n: u64, discard: bool) -> SqlResult<(Vec<RecordBatch>, u64)> {
        let mut out = Vec::new();
        let mut got = 0u64;
        while got < n {
            let batch = match self.pending.take() {
                Some(b) => b,
                None if self.done => break,
                None => match self.stream.next().await {
                    Some(b) => b?,
                    None => {
                        self.done = true;
                        break;
                    }
                },
            };
            let rows = batch.num_rows() as u64;
            let want = n - got;
            let (now, rest) = if rows > want {
                let w = want as usize;
                (batch.slice(0, w), Some(batch.slice(w, batch.num_rows() - w)))
            } else {
                (batch, None)
            };
            got += now.num_rows() as u64;
            if !discard && now.num_rows() > 0 {
                out.push(super::plan::rename_batch(&self.schema, now)?);
            }
            self.pending = rest;
        }
        Ok((out, got))
    }
}

//! COPY FROM STDIN and COPY TO STDOUT, text and CSV formats.
//!
//! COPY FROM parses the client's data as it arrives, a few MiB of complete lines at a time, and
//! inserts each chunk's rows through the same path as INSERT (casts, defaults, constraints) into
//! one transaction (the session's, or its own committed at CopyDone). A row may not exceed
//! [`COPY_ROW_BYTES_MAX`]. COPY TO runs the query and encodes its rows.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{self, Statement};

use super::ddl::{ident_name, resolve_table};
use super::dml::BulkInsert;
use super::session::{Output, Session};
use crate::SqlState;
use crate::error::{SqlError, SqlResult, codes};
use crate::limits::COPY_ROW_BYTES_MAX;

/// Client data is parsed and inserted once this many bytes of it are waiting.
const COPY_CHUNK_BYTES: usize = 4 << 20;

/// Chunks parsed on other threads at once, beyond the one being inserted.
const COPY_PARSERS: usize = 2;

/// What a parser thread made of one chunk of COPY data.
#[derive(Debug)]
struct ParsedChunk {
    /// The rows as text, one column per COPY column.
    text: RecordBatch,
    /// The columns cast for a columnar insert (when the COPY has one and the chunk is large).
    cast: Option<Vec<ArrayRef>>,
    /// The chunk held the end marker `\.`.
    ended: bool,
    /// The chunk's buffer, for reuse.
    buf: Vec<u8>,
}

/// Parses one chunk of complete lines (`line0` lines precede it) and, for a columnar insert of
/// enough rows, casts its columns.
fn parse_chunk(
    mut buf: Vec<u8>,
    o: &CopyOptions,
    ncols: usize,
    line0: usize,
    bulk: Option<&BulkInsert>,
) -> SqlResult<ParsedChunk> {
    let parsed = if o.csv { parse_csv(&buf, o, ncols, line0)? } else { parse_text(&buf, o, ncols, line0)? };
    buf.clear();
    let fields: Vec<Field> = (0..ncols).map(|i| Field::new(format!("c{i}"), ArrowType::Utf8, true)).collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let text = RecordBatch::try_new_with_options(
        schema,
        parsed.columns,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(parsed.rows)),
    )?;
    let cast = match bulk {
        Some(b) if parsed.rows >= crate::limits::BULK_ROWS_MIN => Some(BulkInsert::cast(&b.def, &b.target, &text)?),
        _ => None,
    };
    Ok(ParsedChunk { text, cast, ended: parsed.ended, buf })
}

#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub csv: bool,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions { csv: false, delimiter: b'\t', null: "\\N".into(), header: false, quote: b'"', escape: b'"' }
    }
}

fn options(opts: &[ast::CopyOption], legacy: &[ast::CopyLegacyOption]) -> SqlResult<CopyOptions> {
    let mut o = CopyOptions::default();
    let mut null = None;
    let mut delim = None;
    let mut escape = None;
    for opt in opts {
        match opt {
            ast::CopyOption::Format(f) => match f.value.to_lowercase().as_str() {
                "csv" => o.csv = true,
                "text" => o.csv = false,
                "binary" => return Err(SqlError::unsupported("COPY in binary format")),
                other => {
                    return Err(SqlError::new(
                        codes::INVALID_PARAMETER_VALUE,
                        format!("COPY format \"{other}\" not recognized"),
                    ));
                }
            },
            ast::CopyOption::Freeze(_) | ast::CopyOption::Encoding(_) => {}
            ast::CopyOption::Delimiter(c) => delim = Some(*c),
            ast::CopyOption::Null(n) => null = Some(n.clone()),
            ast::CopyOption::Header(h) => o.header = *h,
            ast::CopyOption::Quote(c) => o.quote = *c as u8,
            ast::CopyOption::Escape(c) => escape = Some(*c as u8),
            other => return Err(SqlError::unsupported(format!("COPY option {other}"))),
        }
    }
    for opt in legacy {
        match opt {
            ast::CopyLegacyOption::Csv(csv) => {
                o.csv = true;
                for c in csv {
                    match c {
                        ast::CopyLegacyCsvOption::Header => o.header = true,
                        ast::CopyLegacyCsvOption::Quote(q) => o.quote = *q as u8,
                        ast::CopyLegacyCsvOption::Escape(e) => escape = Some(*e as u8),
                        other => return Err(SqlError::unsupported(format!("COPY option {other}"))),
                    }
                }
            }
            ast::CopyLegacyOption::Delimiter(c) => delim = Some(*c),
            ast::CopyLegacyOption::Null(n) => null = Some(n.clone()),
            ast::CopyLegacyOption::Binary => return Err(SqlError::unsupported("COPY in binary format")),
            other => return Err(SqlError::unsupported(format!("COPY option {other}"))),
        }
    }
    if o.csv {
        o.delimiter = b',';
        o.null = String::new();
    }
    if let Some(d) = delim {
        if !d.is_ascii() || d == '\n' || d == '\r' {
            return Err(SqlError::new(
                codes::INVALID_PARAMETER_VALUE,
                "COPY delimiter must be a single one-byte character",
            ));
        }
        o.delimiter = d as u8;
    }
    if let Some(n) = null {
        o.null = n;
    }
    o.escape = escape.unwrap_or(o.quote);
    Ok(o)
}

/// The query a COPY TO reads: its own, or all (or the named) columns of its table.
fn copy_query(source: ast::CopySource) -> SqlResult<Statement> {
    Ok(match source {
        ast::CopySource::Query(q) => Statement::Query(q),
        ast::CopySource::Table { table_name, columns } => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
            };
            Session::parse(&format!("SELECT {cols} FROM {table_name}"))?.remove(0)
        }
    })
}

/// A COPY FROM STDIN receiving its data.
#[derive(Debug)]
pub struct PendingCopy {
    table: u64,
    target: Vec<usize>,
    opts: CopyOptions,
    /// Data not parsed yet (an incomplete last line).
    data: Vec<u8>,
    /// Buffers of chunks parsed, kept for the next ones.
    spare: Vec<Vec<u8>>,
    /// Chunks being parsed, oldest first (inserted in this order).
    jobs: VecDeque<tokio::task::JoinHandle<SqlResult<ParsedChunk>>>,
    /// The columnar insert, when the table takes one (see [`super::dml::BulkInsert`]).
    bulk: Option<Arc<BulkInsert>>,
    /// `bulk` was planned (at the first chunk, inside the COPY's transaction).
    planned: bool,
    /// Lines parsed so far (for the header and error positions).
    lines: usize,
    /// The end marker `\.` was seen: the rest is ignored.
    ended: bool,
    rows: u64,
    /// `Some(implicit)` once rows were inserted: whether COPY opened its own transaction.
    started: Option<bool>,
    /// The first error; later data is ignored and CopyDone reports it.
    error: Option<SqlError>,
}

impl Session {
    /// Starts a COPY: for FROM STDIN returns [`Output::CopyIn`] and waits for data; for TO STDOUT
    /// runs the query and returns [`Output::CopyOut`].
    pub(crate) async fn copy(&mut self, stmt: Statement) -> SqlResult<Output> {
        let Statement::Copy { source, to, target, options: opts, legacy_options, .. } = stmt else {
            return Err(SqlError::internal("not a COPY"));
        };
        if let (true, ast::CopyTarget::File { filename }) = (to, &target) {
            // An export: FORMAT parquet (the default) or csv, with CSV's options.
            let format = opts.iter().find_map(|o| match o {
                ast::CopyOption::Format(f) => Some(f.value.clone()),
                _ => None,
            });
            // CSV's options, with CSV's defaults (comma, empty NULL) unless given.
            let mut rest: Vec<ast::CopyOption> =
                opts.iter().filter(|o| !matches!(o, ast::CopyOption::Format(_))).cloned().collect();
            let name = super::export::format_name(filename, format.as_deref());
            if name == "csv" {
                rest.insert(0, ast::CopyOption::Format(ast::Ident::new("csv")));
            }
            let format = super::export::format_of(&name, options(&rest, &legacy_options)?)?;
            let query = copy_query(source)?;
            let rows = self.export(query, filename, format).await?;
            return Ok(Output::count("COPY", rows));
        }
        let o = options(&opts, &legacy_options)?;
        match (to, &target) {
            (false, ast::CopyTarget::Stdin) => {
                let ast::CopySource::Table { table_name, columns } = source else {
                    return Err(SqlError::syntax("COPY FROM needs a table"));
                };
                let had_txn = self.with_txn(|_| Ok(())).is_ok();
                if !had_txn {
                    self.begin_internal();
                }
                self.sync_view();
                let resolved = resolve_table(self, &table_name).and_then(|t| {
                    self.require_relation(t, bkg_kernel::privilege::INSERT)?;
                    Ok((t, self.with_txn(|x| Ok(x.catalog().table(t).cloned()))?))
                });
                if !had_txn {
                    self.end_internal();
                }
                let (table, def) = resolved?;
                let def = def.ok_or_else(|| SqlError::internal("table vanished"))?;
                let target = if columns.is_empty() {
                    def.live_columns().map(|(p, _)| p).collect()
                } else {
                    columns
                        .iter()
                        .map(|c| {
                            let n = ident_name(c);
                            def.column_index(&n).ok_or_else(|| {
                                SqlError::new(
                                    codes::UNDEFINED_COLUMN,
                                    format!("column \"{n}\" of relation \"{}\" does not exist", def.name),
                                )
                            })
                        })
                        .collect::<SqlResult<Vec<_>>>()?
                };
                let n = target.len();
                self.pending_copy = Some(PendingCopy {
                    table,
                    target,
                    opts: o,
                    data: Vec::new(),
                    spare: Vec::new(),
                    jobs: VecDeque::new(),
                    bulk: None,
                    planned: false,
                    lines: 0,
                    ended: false,
                    rows: 0,
                    started: None,
                    error: None,
                });
                Ok(Output::CopyIn { columns: n })
            }
            (true, ast::CopyTarget::Stdout) => {
                let query = copy_query(source)?;
                match Box::pin(self.execute_statement(query)).await? {
                    Output::Rows { schema, batches, .. } => Ok(Output::CopyOut { schema, batches, opts: o }),
                    _ => Err(SqlError::internal("COPY query returned no rows")),
                }
            }
            (_, ast::CopyTarget::File { .. } | ast::CopyTarget::Program { .. }) => Err(SqlError::new(
                codes::INSUFFICIENT_PRIVILEGE,
                "COPY to or from a server file or program is not allowed",
            )
            .with_hint("Use COPY ... FROM STDIN / TO STDOUT (psql's \\copy).")),
            _ => Err(SqlError::syntax("COPY FROM STDOUT / TO STDIN is not valid")),
        }
    }

    /// Adds client data to the COPY in progress; complete lines are parsed and inserted once a
    /// few MiB are waiting.
    pub async fn copy_data(&mut self, data: &[u8]) {
        let Some(p) = self.pending_copy.as_mut() else { return };
        if p.error.is_some() || p.ended {
            return;
        }
        p.data.extend_from_slice(data);
        if p.data.len() >= COPY_CHUNK_BYTES {
            self.copy_flush(false).await;
        }
    }

    /// Hands the complete lines waiting (all data if `last`) to a parser thread and inserts what
    /// the parsers finished, in order; with `last`, waits for all of them. Errors are kept for
    /// CopyDone.
    async fn copy_flush(&mut self, last: bool) {
        let Some(mut p) = self.pending_copy.take() else { return };
        let mut result = Ok(());
        if !p.planned && p.error.is_none() && !p.data.is_empty() {
            p.planned = true;
            self.copy_begin(&mut p);
            self.sync_view();
            match BulkInsert::prepare(self, p.table, Some(p.target.clone()), &[]).await {
                Ok(bulk) => p.bulk = bulk.map(Arc::new),
                Err(e) => result = Err(e),
            }
        }
        if result.is_ok() {
            result = self.copy_dispatch(&mut p, last);
        }
        while result.is_ok() && (p.jobs.len() > COPY_PARSERS || (last && !p.jobs.is_empty())) {
            result = self.copy_insert_next(&mut p).await;
        }
        if let Err(e) = result {
            p.error.get_or_insert(e);
            p.data = Vec::new();
            p.jobs.clear();
        }
        self.pending_copy = Some(p);
    }

    /// Starts parsing (and casting, for a columnar insert) the complete lines waiting.
    fn copy_dispatch(&mut self, p: &mut PendingCopy, last: bool) -> SqlResult<()> {
        if p.error.is_some() || p.ended {
            return Ok(());
        }
        let cut = if last { p.data.len() } else { complete_lines(&p.data, &p.opts) };
        if cut == 0 {
            if p.data.len() > COPY_ROW_BYTES_MAX {
                return Err(SqlError::new(
                    SqlState::ProgramLimitExceeded,
                    format!("a COPY row exceeds the limit of {COPY_ROW_BYTES_MAX} bytes"),
                ));
            }
            return Ok(());
        }
        // The complete lines leave the buffer as they are; the incomplete tail is copied into a
        // buffer a parser gave back, so a long COPY reuses a few buffers instead of growing a
        // fresh one from nothing for every chunk.
        let mut next = p.spare.pop().unwrap_or_default();
        next.clear();
        next.reserve(COPY_CHUNK_BYTES + COPY_CHUNK_BYTES / 4);
        next.extend_from_slice(&p.data[cut..]);
        p.data.truncate(cut);
        let chunk = std::mem::replace(&mut p.data, next);
        let mut o = p.opts.clone();
        o.header &= p.lines == 0;
        let line0 = p.lines;
        p.lines += chunk.iter().filter(|&&b| b == b'\n').count();
        let ncols = p.target.len();
        let bulk = p.bulk.clone();
        p.jobs.push_back(tokio::task::spawn_blocking(move || parse_chunk(chunk, &o, ncols, line0, bulk.as_deref())));
        Ok(())
    }

    /// Waits for the oldest parser and inserts its rows.
    async fn copy_insert_next(&mut self, p: &mut PendingCopy) -> SqlResult<()> {
        let Some(job) = p.jobs.pop_front() else { return Ok(()) };
        let chunk = job.await.map_err(|e| SqlError::internal(format!("COPY parser: {e}")))?;
        if p.ended {
            // Data after the end marker is ignored, errors in it included.
            return Ok(());
        }
        let chunk = chunk?;
        if p.spare.len() < COPY_PARSERS {
            p.spare.push(chunk.buf);
        }
        p.ended = chunk.ended;
        let n = chunk.text.num_rows();
        if n == 0 {
            return Ok(());
        }
        self.copy_begin(p);
        self.sync_view();
        match (&p.bulk, chunk.cast) {
            (Some(bulk), Some(cast)) => bulk.insert(self, cast, n)?,
            _ => {
                super::dml::insert_batches(self, p.table, Some(p.target.clone()), std::slice::from_ref(&chunk.text))
                    .await?;
            }
        }
        p.rows += n as u64;
        Ok(())
    }

    /// Opens the COPY's transaction (or starts its statement in the session's) once.
    fn copy_begin(&mut self, p: &mut PendingCopy) {
        if p.started.is_none() {
            let implicit = !self.in_transaction();
            if implicit {
                self.begin_internal();
            } else {
                self.statement_start();
            }
            p.started = Some(implicit);
        }
    }

    /// Abandons the COPY in progress (client sent CopyFail).
    pub fn copy_fail(&mut self, reason: &str) -> SqlError {
        let p = self.pending_copy.take();
        self.abandon_copy(p.and_then(|p| p.started));
        SqlError::new(codes::QUERY_CANCELED, format!("COPY from stdin failed: {reason}"))
    }

    /// Ends a failed COPY: its own transaction is dropped, the session's marked failed.
    fn abandon_copy(&mut self, started: Option<bool>) {
        if started == Some(true) {
            self.end_internal();
        }
        self.mark_failed();
    }

    /// Parses and inserts the rest of the COPY in progress, commits its own transaction if it
    /// opened one, and returns the row count.
    pub async fn copy_done(&mut self) -> SqlResult<u64> {
        if self.pending_copy.is_none() {
            return Err(SqlError::new(codes::PROTOCOL_VIOLATION, "no COPY in progress"));
        }
        self.copy_flush(true).await;
        let p = self.pending_copy.take().ok_or_else(|| SqlError::internal("COPY vanished"))?;
        if let Some(e) = p.error {
            self.abandon_copy(p.started);
            return Err(e);
        }
        if p.started == Some(true)
            && let Err(e) = self.commit_internal().await
        {
            self.mark_failed();
            return Err(e);
        }
        Ok(p.rows)
    }
}

/// Length of the leading complete lines of `data` (CSV: newlines inside quotes do not end one).
fn complete_lines(data: &[u8], o: &CopyOptions) -> usize {
    if !o.csv {
        return data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    }
    let (mut quoted, mut end, mut i) = (false, 0, 0);
    while i < data.len() {
        let b = data[i];
        if quoted {
            if b == o.escape && o.escape != o.quote && data.get(i + 1) == Some(&o.quote) {
                i += 2;
                continue;
            }
            if b == o.quote {
                quoted = false;
            }
        } else if b == o.quote {
            quoted = true;
        } else if b == b'\n' {
            end = i + 1;
        }
        i += 1;
    }
    end
}

/// Rows parsed from a chunk of COPY data, column by column, as text.
pub struct Parsed {
    pub columns: Vec<ArrayRef>,
    pub rows: usize,
    /// The chunk held the end marker `\.`.
    pub ended: bool,
}

fn field_count_error(line: usize, got: usize, want: usize) -> SqlError {
    if got > want {
        SqlError::new(SqlState::BadCopyFileFormat, format!("extra data after last expected column (line {line})"))
    } else {
        SqlError::new(SqlState::BadCopyFileFormat, format!("missing data for column {} (line {line})", got + 1))
    }
}

fn utf8_error() -> SqlError {
    SqlError::new(SqlState::CharacterNotInRepertoire, "invalid byte sequence for encoding \"UTF8\"")
}

/// Parsed fields go straight into one text column builder per column.
struct Columns {
    builders: Vec<StringBuilder>,
    /// Column of the next field in the current row.
    col: usize,
    rows: usize,
}

impl Columns {
    fn new(ncols: usize, bytes: usize) -> Columns {
        let per_col = bytes / ncols.max(1);
        Columns { builders: (0..ncols).map(|_| StringBuilder::with_capacity(1024, per_col)).collect(), col: 0, rows: 0 }
    }

    fn push(&mut self, v: Option<&str>, line: usize) -> SqlResult<()> {
        let Some(b) = self.builders.get_mut(self.col) else {
            return Err(field_count_error(line, self.col + 1, self.builders.len()));
        };
        b.append_option(v);
        self.col += 1;
        Ok(())
    }

    fn end_row(&mut self, line: usize) -> SqlResult<()> {
        if self.col != self.builders.len() {
            return Err(field_count_error(line, self.col, self.builders.len()));
        }
        self.col = 0;
        self.rows += 1;
        Ok(())
    }

    fn finish(self, ended: bool) -> Parsed {
        let columns = self.builders.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef).collect();
        Parsed { columns, rows: self.rows, ended }
    }
}

/// PostgreSQL text format: delimiter-separated, `\N` (or the NULL string) for NULL, backslash escapes.
/// `line0` is the number of lines before `data` (for error positions).
pub fn parse_text(data: &[u8], o: &CopyOptions, ncols: usize, line0: usize) -> SqlResult<Parsed> {
    let text = std::str::from_utf8(data).map_err(|_| utf8_error())?;
    let mut cols = Columns::new(ncols, data.len());
    let mut ended = false;
    let nlines = text.split('\n').count();
    let mut out = String::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            ended = true;
            break;
        }
        if line.is_empty() && i + 1 == nlines {
            continue;
        }
        if o.header && i == 0 {
            continue;
        }
        let at = line0 + i + 1;
        for raw in line.split(o.delimiter as char) {
            if raw == o.null {
                cols.push(None, at)?;
                continue;
            }
            if !raw.contains('\\') {
                cols.push(Some(raw), at)?;
                continue;
            }
            out.clear();
            let mut chars = raw.chars().peekable();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('v') => out.push('\u{b}'),
                    Some('x') => {
                        let mut v = 0u32;
                        for _ in 0..2 {
                            match chars.peek().and_then(|c| c.to_digit(16)) {
                                Some(d) => {
                                    v = v * 16 + d;
                                    chars.next();
                                }
                                None => break,
                            }
                        }
                        out.push(char::from_u32(v).unwrap_or('?'));
                    }
                    Some(d @ '0'..='7') => {
                        let mut v = d.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match chars.peek().and_then(|c| c.to_digit(8)) {
                                Some(x) => {
                                    v = v * 8 + x;
                                    chars.next();
                                }
                                None => break,
                            }
                        }
                        out.push(char::from_u32(v).unwrap_or('?'));
                    }
                    Some(other) => out.push(other),
                    None => {}
                }
            }
            cols.push(Some(&out), at)?;
        }
        cols.end_row(at)?;
    }
    Ok(cols.finish(ended))
}

/// CSV: quoted fields may hold delimiters, quotes (doubled) and newlines; an unquoted field equal
/// to the NULL string (empty by default) is NULL, a quoted empty string is an empty string.
/// `line0` is the number of lines before `data` (for error positions).
pub fn parse_csv(data: &[u8], o: &CopyOptions, ncols: usize, line0: usize) -> SqlResult<Parsed> {
    let mut cols = Columns::new(ncols, data.len());
    let mut ended = false;
    let mut field: Vec<u8> = Vec::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut line = 1usize;
    let mut i = 0;
    let mut at_line_start = true;
    let finish_field = |field: &mut Vec<u8>, was_quoted: bool, line: usize, cols: &mut Columns| -> SqlResult<()> {
        if !(o.header && line == 1) {
            let s = std::str::from_utf8(field).map_err(|_| utf8_error())?;
            cols.push(if !was_quoted && s == o.null { None } else { Some(s) }, line0 + line)?;
        }
        field.clear();
        Ok(())
    };
    let special = |b: u8| b == o.quote || b == o.delimiter || b == b'\n' || b == b'\r';
    while i < data.len() {
        let b = data[i];
        if quoted {
            if b == o.escape && o.escape != o.quote && data.get(i + 1) == Some(&o.quote) {
                field.push(o.quote);
                i += 2;
                continue;
            }
            if b == o.quote {
                if o.escape == o.quote && data.get(i + 1) == Some(&o.quote) {
                    field.push(o.quote);
                    i += 2;
                    continue;
                }
                quoted = false;
                i += 1;
                continue;
            }
            if b == b'\n' {
                line += 1;
            }
            field.push(b);
            i += 1;
            continue;
        }
        if at_line_start && data[i..].starts_with(b"\\.") && matches!(data.get(i + 2), None | Some(b'\n') | Some(b'\r'))
        {
            ended = true;
            break;
        }
        at_line_start = false;
        match b {
            _ if b == o.quote => {
                quoted = true;
                was_quoted = true;
            }
            _ if b == o.delimiter => {
                finish_field(&mut field, was_quoted, line, &mut cols)?;
                was_quoted = false;
            }
            b'\r' if data.get(i + 1) == Some(&b'\n') => {}
            b'\n' => {
                finish_field(&mut field, was_quoted, line, &mut cols)?;
                was_quoted = false;
                if !(o.header && line == 1) {
                    cols.end_row(line0 + line)?;
                }
                line += 1;
                at_line_start = true;
            }
            _ => {
                // A run of ordinary bytes at once.
                let start = i;
                i += 1;
                while i < data.len() && !special(data[i]) {
                    i += 1;
                }
                field.extend_from_slice(&data[start..i]);
                continue;
            }
        }
        i += 1;
    }
    if quoted {
        return Err(SqlError::new(SqlState::BadCopyFileFormat, "unterminated CSV quoted field"));
    }
    if !field.is_empty() || was_quoted || cols.col > 0 {
        finish_field(&mut field, was_quoted, line, &mut cols)?;
        if !(o.header && line == 1) {
            cols.end_row(line0 + line)?;
        }
    }
    Ok(cols.finish(ended))
}

fn escape_text(s: &str, delim: u8, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' if delim == b'\t' => out.push_str("\\t"),
            c if c as u32 == delim as u32 => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// Encodes the rows of a COPY TO as lines of text or CSV.
pub fn encode_rows(schema: &SchemaRef, batches: &[RecordBatch], o: &CopyOptions) -> SqlResult<Vec<String>> {
    let mut out = Vec::new();
    let delim = o.delimiter as char;
    let q = o.quote as char;
    let csv_field = |s: &str| -> String {
        let needs =
            s.is_empty() || s == o.null || s.contains(delim) || s.contains(q) || s.contains('\n') || s.contains('\r');
        if needs { format!("{q}{}{q}", s.replace(q, &format!("{}{q}", o.escape as char))) } else { s.to_string() }
    };
    let mut header = if o.header && o.csv {
        Some(schema.fields().iter().map(|f| csv_field(f.name())).collect::<Vec<_>>().join(&delim.to_string()) + "\n")
    } else if o.header {
        Some(schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>().join(&delim.to_string()) + "\n")
    } else {
        None
    };
    for b in batches {
        for r in 0..b.num_rows() {
            let mut line = header.take().unwrap_or_default();
            for (c, col) in b.columns().iter().enumerate() {
                if c > 0 {
                    line.push(delim);
                }
                match crate::pg_format::text_value(col.as_ref(), r)? {
                    None => line.push_str(&o.null),
                    Some(s) if o.csv => line.push_str(&csv_field(&s)),
                    Some(s) => escape_text(&s, o.delimiter, &mut line),
                }
            }
            line.push('\n');
            out.push(line);
        }
    }
    if let Some(h) = header {
        out.push(h);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, StringArray};

    use super::*;

    /// The parsed rows, as text.
    fn rows(p: Parsed) -> Vec<Vec<Option<String>>> {
        let cols: Vec<&StringArray> = p.columns.iter().map(|c| c.as_any().downcast_ref().unwrap()).collect();
        (0..p.rows).map(|r| cols.iter().map(|c| (!c.is_null(r)).then(|| c.value(r).to_string())).collect()).collect()
    }

    #[test]
    fn text_format_parses_nulls_and_escapes() {
        let o = CopyOptions::default();
        let rows = rows(parse_text(b"1\ta\\tb\t\\N\n2\tx\\\\y\t\\101\n\\.\n", &o, 3, 0).unwrap());
        assert_eq!(rows[0], vec![Some("1".into()), Some("a\tb".into()), None]);
        assert_eq!(rows[1], vec![Some("2".into()), Some("x\\y".into()), Some("A".into())]);
        assert_eq!(parse_text(b"1\t2\n", &o, 3, 0).err().expect("too few fields").code, "22P04");
    }

    #[test]
    fn csv_parses_quotes_newlines_and_nulls() {
        let o =
            CopyOptions { csv: true, delimiter: b',', null: String::new(), header: true, quote: b'"', escape: b'"' };
        let rows = rows(parse_csv(b"id,name,note\n1,\"a,b\",\n2,\"say \"\"hi\"\"\nthere\",\"\"\n", &o, 3, 0).unwrap());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], vec![Some("1".into()), Some("a,b".into()), None]);
        assert_eq!(rows[1], vec![Some("2".into()), Some("say \"hi\"\nthere".into()), Some("".into())]);
    }
}

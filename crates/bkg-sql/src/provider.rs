//! DataFusion's view of the kernel: a catalog list, schemas, and the MVCC table provider.
//!
//! The catalog a statement sees is the one of its transaction (a private copy after DDL), set on
//! the session's [`CatalogView`] before planning. Table providers resolve rows at `scan()` time
//! from the [`ScanContext`] carried as a typed session extension: no context, no rows (fail
//! closed). Scans never report exact statistics, so aggregates are always computed from the rows
//! the snapshot really sees.

use std::sync::Arc;

use async_trait::async_trait;
use bkg_kernel::mvcc::{BaseSegment, ColumnStats, columns_from_rows};
use bkg_kernel::{Catalog, DataType, Database, Row, TableDef, Transaction, Value};
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, DataFusionError, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::ViewTable;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::SessionState;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::{Mutex, RwLock};

/// The database name clients connect to; DataFusion's catalog name.
pub const DATABASE_NAME: &str = "postgres";
/// Schema under which DML statements see a table with its hidden `__rowid` column.
pub const DML_SCHEMA: &str = "__dml";
pub const ROWID_COLUMN: &str = "__rowid";
const BATCH_ROWS: usize = 8192;

/// The per-statement transaction, reachable from scans.
#[derive(Debug)]
pub struct ScanContext {
    pub txn: Arc<Mutex<Option<Transaction>>>,
    /// Who runs the statement: the scan applies row-level security for this principal.
    pub security: Arc<super::policy::Security>,
}

/// The catalog the session's statements currently plan against, plus the state views use.
pub struct CatalogView {
    pub catalog: RwLock<Arc<Catalog>>,
    pub planner: RwLock<Option<SessionState>>,
}

impl std::fmt::Debug for CatalogView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogView").finish()
    }
}

impl CatalogView {
    pub fn new(catalog: Arc<Catalog>) -> Arc<CatalogView> {
        Arc::new(CatalogView { catalog: RwLock::new(catalog), planner: RwLock::new(None) })
    }
    pub fn set(&self, catalog: Arc<Catalog>) {
        *self.catalog.write() = catalog;
    }
    pub fn get(&self) -> Arc<Catalog> {
        self.catalog.read().clone()
    }
}

#[derive(Debug)]
pub struct BkgCatalogList {
    pub view: Arc<CatalogView>,
    pub db: Database,
}

impl CatalogProviderList for BkgCatalogList {
    fn register_catalog(&self, _name: String, _catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        None
    }
    fn catalog_names(&self) -> Vec<String> {
        vec![DATABASE_NAME.to_string()]
    }
    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == DATABASE_NAME).then(|| Arc::new(BkgCatalog { view: self.view.clone(), db: self.db.clone() }) as _)
    }
}

#[derive(Debug)]
struct BkgCatalog {
    view: Arc<CatalogView>,
    db: Database,
}

impl CatalogProvider for BkgCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.view.get().schemas.keys().cloned().collect();
        names.push(super::pg_catalog::PG_CATALOG.to_string());
        names
    }
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let cat = self.view.get();
        if name == DML_SCHEMA || name == super::pg_catalog::PG_CATALOG || cat.schemas.contains_key(name) {
            Some(Arc::new(BkgSchema { name: name.to_string(), view: self.view.clone(), db: self.db.clone() }))
        } else {
            None
        }
    }
}

#[derive(Debug)]
struct BkgSchema {
    name: String,
    view: Arc<CatalogView>,
    db: Database,
}

#[async_trait]
impl SchemaProvider for BkgSchema {
    fn table_names(&self) -> Vec<String> {
        if self.name == super::pg_catalog::PG_CATALOG {
            return super::pg_catalog::table_names().map(str::to_string).collect();
        }
        let cat = self.view.get();
        let mut names: Vec<String> =
            cat.tables.values().filter(|t| t.schema == self.name).map(|t| t.name.clone()).collect();
        names.extend(cat.views.values().filter(|v| v.schema == self.name).map(|v| v.name.clone()));
        names
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        let cat = self.view.get();
        if self.name == super::pg_catalog::PG_CATALOG {
            return super::pg_catalog::build(&cat, name);
        }
        if self.name == DML_SCHEMA {
            let id = name.strip_prefix('t').and_then(|s| s.parse::<u64>().ok());
            return Ok(id.and_then(|id| cat.table(id)).map(|def| Arc::new(MvccTable::new(def.clone(), true)) as _));
        }
        if let Some(def) = cat.find_table(&self.name, name) {
            return Ok(Some(Arc::new(MvccTable::new(def.clone(), false))));
        }
        if let Some(v) = cat.find_view(&self.name, name) {
            let planner = self.view.planner.read().clone();
            let Some(state) = planner else {
                return Err(DataFusionError::Plan("views cannot be planned in this context".into()));
            };
            let stmt = state.sql_to_statement(&v.sql, &datafusion::config::Dialect::PostgreSQL)?;
            let plan = Box::pin(state.statement_to_plan(stmt)).await?;
            return Ok(Some(Arc::new(BkgView { id: v.id, inner: ViewTable::new(plan, Some(v.sql.clone())) })));
        }
        let _ = &self.db;
        // As in PostgreSQL, pg_catalog is searched for unqualified names too.
        super::pg_catalog::build(&cat, name)
    }

    fn table_exist(&self, name: &str) -> bool {
        let cat = self.view.get();
        cat.find_table(&self.name, name).is_some()
            || cat.find_view(&self.name, name).is_some()
            || (self.name == super::pg_catalog::PG_CATALOG && super::pg_catalog::table_names().any(|t| t == name))
    }
}

/// A catalog view: DataFusion's view table plus the view's id, for privilege checks.
#[derive(Debug)]
pub struct BkgView {
    pub id: u64,
    inner: ViewTable,
}

#[async_trait]
impl TableProvider for BkgView {
    fn get_logical_plan(&'_ self) -> Option<std::borrow::Cow<'_, datafusion::logical_expr::LogicalPlan>> {
        self.inner.get_logical_plan()
    }

    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }
}

/// A kernel table as DataFusion sees it.
#[derive(Debug)]
pub struct MvccTable {
    pub def: TableDef,
    /// Physical column positions of the schema's columns (the last one is `__rowid` in DML mode).
    positions: Vec<usize>,
    schema: SchemaRef,
    with_rowid: bool,
    /// The primary key and unique keys, so the planner knows the columns they determine
    /// (`GROUP BY t.id` lets the select list name t's other columns, as in PostgreSQL).
    constraints: datafusion::common::Constraints,
}

impl MvccTable {
    pub fn new(def: TableDef, with_rowid: bool) -> MvccTable {
        let mut fields = Vec::new();
        let mut positions = Vec::new();
        for (pos, c) in def.live_columns() {
            fields.push(c.data_type.arrow_field(&c.name, c.nullable));
            positions.push(pos);
        }
        if with_rowid {
            fields.push(Field::new(ROWID_COLUMN, datafusion::arrow::datatypes::DataType::UInt64, false));
        }
        let at = |c: &usize| positions.iter().position(|p| p == c);
        let keys = def
            .indexes
            .iter()
            .filter(|i| i.unique)
            .filter_map(|i| {
                let cols: Option<Vec<usize>> = i.columns.iter().map(at).collect();
                let cols = cols?;
                // A unique key with a nullable column determines nothing for NULL rows.
                if i.primary {
                    Some(datafusion::common::Constraint::PrimaryKey(cols))
                } else if i.columns.iter().all(|c| !def.columns[*c].nullable) {
                    Some(datafusion::common::Constraint::Unique(cols))
                } else {
                    None
                }
            })
            .collect();
        let constraints = datafusion::common::Constraints::new_unverified(keys);
        MvccTable { schema: Arc::new(Schema::new(fields)), positions, def, with_rowid, constraints }
    }

    /// True for the row-id-carrying view UPDATE and DELETE select their target rows through.
    pub fn is_dml_view(&self) -> bool {
        self.with_rowid
    }

    /// `column = literal` on every column of a unique index gives a point lookup.
    fn point_lookup(&self, filters: &[Expr]) -> Option<(u64, Vec<Value>)> {
        let mut eqs: Vec<(usize, Value)> = Vec::new();
        for f in filters {
            collect_equalities(f, &self.def, &mut eqs);
        }
        for idx in self.def.indexes.iter().filter(|i| i.unique) {
            let key: Option<Vec<Value>> =
                idx.columns.iter().map(|c| eqs.iter().find(|(p, _)| p == c).map(|(_, v)| v.clone())).collect();
            if let Some(key) = key {
                return Some((idx.id, key));
            }
        }
        None
    }
}

fn collect_equalities(e: &Expr, def: &TableDef, out: &mut Vec<(usize, Value)>) {
    if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e {
        match op {
            Operator::And => {
                collect_equalities(left, def, out);
                collect_equalities(right, def, out);
            }
            Operator::Eq => {
                let pair = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => Some((c, v)),
                    _ => None,
                };
                if let Some((col, lit)) = pair
                    && let Some(pos) = def.column_index(&col.name)
                    && let Some(v) = scalar_to_value(lit, &def.columns[pos].data_type)
                {
                    out.push((pos, v));
                }
            }
            _ => {}
        }
    }
}

/// Converts a literal to the kernel value a column of type `dt` would hold, if exact.
pub fn scalar_to_value(s: &ScalarValue, dt: &DataType) -> Option<Value> {
    let int = match s {
        ScalarValue::Int8(Some(v)) => Some(*v as i64),
        ScalarValue::Int16(Some(v)) => Some(*v as i64),
        ScalarValue::Int32(Some(v)) => Some(*v as i64),
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::UInt8(Some(v)) => Some(*v as i64),
        ScalarValue::UInt16(Some(v)) => Some(*v as i64),
        ScalarValue::UInt32(Some(v)) => Some(*v as i64),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        _ => None,
    };
    match (dt, int, s) {
        (DataType::Int16, Some(i), _) => i16::try_from(i).ok().map(Value::Int16),
        (DataType::Int32, Some(i), _) => i32::try_from(i).ok().map(Value::Int32),
        (DataType::Int64, Some(i), _) => Some(Value::Int64(i)),
        (
            DataType::Text | DataType::Varchar(_) | DataType::Uuid,
            _,
            ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t)) | ScalarValue::LargeUtf8(Some(t)),
        ) => Some(Value::Text(Arc::from(t.as_str()))),
        (DataType::Bool, _, ScalarValue::Boolean(Some(b))) => Some(Value::Bool(*b)),
        _ => None,
    }
}

/// Builds Arrow batches of the given physical columns (and optionally row ids) from rows.
pub fn rows_to_batches(
    def: &TableDef,
    schema: &SchemaRef,
    positions: &[Option<usize>],
    rows: &[(u64, Row)],
) -> Result<Vec<RecordBatch>, DataFusionError> {
    rows.chunks(BATCH_ROWS)
        .map(|chunk| {
            let cols = columns_from_rows(def, positions, chunk).map_err(|e| DataFusionError::External(Box::new(e)))?;
            chunk_to_batch(schema, chunk.len(), cols)
        })
        .collect()
}

fn chunk_to_batch(schema: &SchemaRef, rows: usize, cols: Vec<ArrayRef>) -> Result<RecordBatch, DataFusionError> {
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        cols,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

/// The Parquet row-group statistics of a table's columnar base, as DataFusion's pruning sees
/// them: one container per row group.
struct BaseStatistics<'a> {
    base: &'a BaseSegment,
    def: &'a TableDef,
}

impl BaseStatistics<'_> {
    fn column(&self, c: &Column) -> Option<&ColumnStats> {
        self.base.stats.get(&self.def.column_index(&c.name)?)
    }
}

impl PruningStatistics for BaseStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column).map(|s| s.mins.clone())
    }
    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column).map(|s| s.maxes.clone())
    }
    fn num_containers(&self) -> usize {
        self.base.groups.len()
    }
    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column).map(|s| Arc::new(s.null_counts.clone()) as ArrayRef)
    }
    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from_iter_values(self.base.groups.iter().map(|g| g.num_rows() as u64))))
    }
    fn contained(&self, _: &Column, _: &std::collections::HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

impl MvccTable {
    /// A pruning predicate over the table's columns from the pushed-down filters, if any apply.
    fn pruning_predicate(&self, state: &dyn Session, filters: &[Expr]) -> Option<Arc<PruningPredicate>> {
        let expr = conjunction(filters.iter().cloned())?;
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone()).ok()?;
        let physical = state.create_physical_expr(expr, &df_schema).ok()?;
        PruningPredicateBuilder::new().with_file_schema(self.schema.clone()).build(physical)
    }
}

#[async_trait]
impl TableProvider for MvccTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn constraints(&self) -> Option<&datafusion::common::Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Filters only narrow what the scan reads (point lookups, row-group pruning);
        // DataFusion re-checks them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let ctx = state
            .config()
            .get_extension::<ScanContext>()
            .ok_or_else(|| DataFusionError::Plan("no transaction is bound to this statement".into()))?;
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        // Row-level security: the policy is evaluated on the rows first, before any filter of
        // the query, so it needs every column; the projection is applied after it.
        let policy = match state.as_any().downcast_ref::<SessionState>() {
            Some(session_state) => {
                let command = super::policy::scan_command(&ctx.security, &self.def, self.with_rowid);
                super::policy::row_filter(session_state, &ctx.security, &self.def, command, None)?
                    .map(|f| (session_state, f))
            }
            None if ctx.security.restricted(&self.def) => {
                return Err(DataFusionError::Plan("row-level security needs the session's planner state".into()));
            }
            None => None,
        };
        let proj = if policy.is_some() { &all } else { projection.unwrap_or(&all) };
        let positions: Vec<Option<usize>> = proj
            .iter()
            .map(|&i| if self.with_rowid && i == self.positions.len() { None } else { Some(self.positions[i]) })
            .collect();
        let projected = Arc::new(self.schema.project(proj)?);
        let point = self.point_lookup(filters);
        let predicate = if point.is_none() { self.pruning_predicate(state, filters) } else { None };
        let prune = |base: &BaseSegment| -> Vec<bool> {
            let stats = BaseStatistics { base, def: &self.def };
            match &predicate {
                Some(p) => p.prune(&stats).unwrap_or_else(|_| vec![true; base.groups.len()]),
                None => vec![true; base.groups.len()],
            }
        };
        let guard = ctx.txn.lock();
        let txn = guard.as_ref().ok_or_else(|| DataFusionError::Plan("no transaction is open".into()))?;
        let external = |e: bkg_kernel::Error| DataFusionError::External(Box::new(e));
        let batches = match point {
            Some((index, key)) => {
                let rows = txn.lookup(self.def.id, index, &key).map_err(external)?;
                drop(guard);
                rows_to_batches(&self.def, &projected, &positions, &rows)?
            }
            None => {
                let max = if filters.is_empty() && policy.is_none() { limit.unwrap_or(usize::MAX) } else { usize::MAX };
                let chunks = txn
                    .scan_columns(self.def.id, &positions, predicate.as_ref().map(|_| &prune as _), max)
                    .map_err(external)?;
                drop(guard);
                chunks.into_iter().map(|(n, cols)| chunk_to_batch(&projected, n, cols)).collect::<Result<_, _>>()?
            }
        };
        let (batches, projected) = match &policy {
            None => (batches, projected),
            Some((session_state, filter)) => {
                let out_schema = Arc::new(self.schema.project(projection.unwrap_or(&all))?);
                let kept = batches
                    .into_iter()
                    .map(|b| {
                        let b = super::policy::filter_batch(session_state, &self.schema, filter, b)?;
                        Ok(match projection {
                            Some(p) => b.project(p)?,
                            None => b,
                        })
                    })
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                (kept, out_schema)
            }
        };
        // Spread the batches over the configured number of partitions so operators above the
        // scan run in parallel.
        let parts = state.config().target_partitions().clamp(1, batches.len().max(1));
        let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); parts];
        for (i, b) in batches.into_iter().enumerate() {
            partitions[i % parts].push(b);
        }
        let exec = MemorySourceConfig::try_new_exec(&partitions, projected, None)?;
        Ok(exec)
    }
}

//! Committed changes for the realtime door, under the same policy engine as every query.
//!
//! The kernel's change feed ([`Engine::subscribe_changes`], [`Engine::changes_since`]) gives
//! each committed row change in commit order. This module decides who may see which of them:
//!
//! - A [`Viewer`] is a subscriber's principal (role and JWT claims), resolved when it joins and
//!   again when it refreshes its token.
//! - A [`RowGate`] is what one viewer may receive of one table, compiled once: nothing at all
//!   without SELECT on the table (or a token scope that allows reading its schema), else the
//!   rows that pass the table's SELECT policies (row-level security) and the subscriber's own
//!   filter. Two gates with the same [`RowGate::key`] pass the same rows, so a change is
//!   evaluated once per distinct key, not once per subscriber.
//! - [`ChangeRows`] holds the rows of one table's changes in one commit as a column batch, built
//!   once and evaluated by every gate (a vectorised predicate, no query per subscriber).
//!
//! Policies are evaluated as of the change's commit: with the catalog in force then
//! ([`Engine::catalog_at`]) and on the row as committed (for DELETE, the old row). Columns carry
//! no separate privileges in bkg-db, so a viewer that may read a table reads all its columns.

use std::sync::Arc;

use bkg_kernel::{Catalog, TableDef, Value, privilege};
pub use bkg_kernel::{Change, ChangeKind, ChangeSubscription, FeedError};
use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
pub use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{SqlError, SqlResult};
use crate::policy::{Scopes, Security};
use crate::session::Engine;
use crate::{SqlState, policy};

impl Engine {
    /// Every commit made visible from now on (see `bkg_kernel::Database::subscribe`).
    pub fn subscribe_changes(&self) -> ChangeSubscription {
        self.db.subscribe()
    }

    /// Committed changes with `lsn >= from_lsn` still in the WAL, at most `limit`.
    pub fn changes_since(&self, from_lsn: u64, limit: usize) -> SqlResult<Vec<Change>> {
        Ok(self.db.changes_since(from_lsn, limit)?)
    }

    /// The catalog a change with commit timestamp `ts` was committed under.
    pub fn catalog_at(&self, ts: u64) -> Arc<Catalog> {
        self.db.catalog_at(ts)
    }

    /// The principal `role` (a role name, as a verified token's `role` claim names it) with the
    /// token's claims; 28000 when the role does not exist.
    pub fn viewer(&self, role: &str, claims: Option<serde_json::Value>) -> SqlResult<Viewer> {
        let cat = self.catalog();
        let def = cat.find_role(role).ok_or_else(|| {
            SqlError::new(SqlState::InvalidAuthorizationSpecification, format!("role \"{role}\" does not exist"))
        })?;
        let scopes = claims.as_ref().and_then(Scopes::from_claims);
        Ok(Viewer { role: def.oid, role_name: role.to_string(), claims: claims.map(Arc::new), scopes })
    }
}

/// What a principal may do on one extension (`broadcast` or `presence`) of a private realtime
/// channel, as decided by the policies on `realtime.messages` (see [`Engine::channel_access`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelAccess {
    /// Receive: SELECT on `realtime.messages` and a SELECT policy passing the channel's row.
    pub read: bool,
    /// Send: INSERT on `realtime.messages` and an INSERT policy's WITH CHECK passing the row.
    pub write: bool,
}

/// The table whose policies authorise private realtime channels.
pub const CHANNEL_TABLE: (&str, &str) = ("realtime", "messages");

impl Engine {
    /// What `viewer` may do on the private channel `topic` (the name the client gave,
    /// `realtime.topic()` in a policy) for `extension`: the table privileges and row-level
    /// security policies of `realtime.messages` judge a row `{topic, extension, private: true}`
    /// (its other columns NULL), as they would judge a message stored there, with the viewer's
    /// claims and the topic bound. A role that bypasses row security passes on privileges alone.
    /// 42P01 when the table does not exist; errors of a policy are the policy's.
    pub fn channel_access(self: &Arc<Self>, viewer: &Viewer, topic: &str, extension: &str) -> SqlResult<ChannelAccess> {
        let cat = self.catalog();
        let (schema, name) = CHANNEL_TABLE;
        let def = cat.find_table(schema, name).ok_or_else(|| {
            SqlError::new(SqlState::UndefinedTable, format!("relation \"{schema}.{name}\" does not exist"))
        })?;
        let mut sec = Security::new(&cat, viewer.role, viewer.claims.clone(), None);
        sec.topic = Some(topic.to_string());
        let row: serde_json::Map<String, serde_json::Value> = serde_json::json!({
            "topic": topic, "extension": extension, "private": true
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        let state = self.session(&viewer.role_name).planning_state();
        let decide = |privilege: u32, command: bkg_kernel::PolicyCommand, clause: policy::Clause| {
            let allowed = crate::roles::require_relation_in(&cat, viewer.role, def.id, privilege).is_ok()
                && crate::roles::require_scope_in(viewer.scopes.as_ref(), &cat, def.id, privilege).is_ok();
            if !allowed || !sec.restricted(def) {
                return Ok(allowed);
            }
            let sql = policy::combined_sql(&sec, def, command, clause);
            Ok::<bool, SqlError>(policy::evaluate_on_row(&state, &sec, def, &sql, &row)? == Some(true))
        };
        let read = decide(privilege::SELECT, bkg_kernel::PolicyCommand::Select, policy::Clause::Using)?;
        let write = decide(privilege::INSERT, bkg_kernel::PolicyCommand::Insert, policy::Clause::Check)?;
        Ok(ChannelAccess { read, write })
    }
}

/// A subscriber's principal.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub role: u64,
    pub role_name: String,
    pub claims: Option<Arc<serde_json::Value>>,
    scopes: Option<Scopes>,
}

/// What one viewer may receive of one table's changes (see the module documentation).
pub struct RowGate {
    key: String,
    /// `None`: every row passes.
    predicate: Option<Arc<dyn PhysicalExpr>>,
    /// When the whole predicate is `column = constant` (a per-user policy such as
    /// `user_id = auth.uid()` with no filter): the column's position among the live columns
    /// and the constant in the column's type. Callers may then find the gates a row passes by
    /// looking its value up, instead of evaluating every gate.
    equality: Option<(usize, ScalarValue)>,
}

impl std::fmt::Debug for RowGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowGate").field("key", &self.key).finish()
    }
}

impl RowGate {
    /// Compiles the gate of `viewer` on `def` (in catalog `cat`), with `filter` an extra predicate
    /// in SQL over the table's columns (a subscriber's filter, already quoted). 42501 when the
    /// viewer may not read the table at all; 42703 and friends when the filter does not apply.
    pub fn compile(
        engine: &Arc<Engine>,
        cat: &Catalog,
        viewer: &Viewer,
        def: &TableDef,
        filter: Option<&str>,
    ) -> SqlResult<RowGate> {
        crate::roles::require_relation_in(cat, viewer.role, def.id, privilege::SELECT)?;
        crate::roles::require_scope_in(viewer.scopes.as_ref(), cat, def.id, privilege::SELECT)?;
        let sec = Security::new(cat, viewer.role, viewer.claims.clone(), None);
        let session = engine.session(&viewer.role_name);
        let state = session.planning_state();
        let mut parts: Vec<Expr> = Vec::new();
        let mut key = format!("{}", def.id);
        if sec.restricted(def) {
            let combined = policy::combined_sql(&sec, def, bkg_kernel::PolicyCommand::Select, policy::Clause::Using);
            key.push_str(&format!("|rls:{}", policy::bound_text(&sec, &combined)?));
            if let Some(e) = policy::row_filter(&state, &sec, def, bkg_kernel::PolicyCommand::Select, None)? {
                parts.push(e);
            }
        }
        if let Some(f) = filter {
            key.push_str(&format!("|filter:{f}"));
            parts.push(policy::compile_predicate(&state, &sec, def, f)?);
        }
        let schema = policy::table_df_schema(def, None)?;
        let (predicate, equality) = match parts.into_iter().reduce(Expr::and) {
            None => (None, None),
            Some(expr) => {
                let equality = column_equals_constant(&state, &schema, &expr);
                (Some(state.create_physical_expr(expr, &schema)?), equality)
            }
        };
        Ok(RowGate { key, predicate, equality })
    }

    /// `Some((column, value))` when the gate passes exactly the rows whose live column
    /// `column` equals `value` (see [`RowGate`]); the value compares equal to the column's
    /// values as SQL `=` does, with `ScalarValue`'s equality.
    pub fn equality(&self) -> Option<(usize, &ScalarValue)> {
        self.equality.as_ref().map(|(c, v)| (*c, v))
    }

    /// Gates with equal keys pass the same rows of the same changes.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Which of `rows` pass (NULL counts as not passing, as in WHERE). An error (a policy that
    /// fails on these rows) concerns only the viewers of this gate.
    pub fn evaluate(&self, rows: &ChangeRows) -> SqlResult<Vec<bool>> {
        let n = rows.batch.num_rows();
        let Some(p) = &self.predicate else { return Ok(vec![true; n]) };
        let mask = p.evaluate(&rows.batch)?.into_array(n)?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| SqlError::internal("a row predicate must be boolean"))?;
        Ok((0..n).map(|i| mask.is_valid(i) && mask.value(i)).collect())
    }
}

/// `column = constant` (either way round, the constant possibly cast), with the constant
/// evaluated and cast to the column's type; `None` for any other shape or when the cast fails.
fn column_equals_constant(
    state: &datafusion::execution::SessionState,
    schema: &datafusion::common::DFSchema,
    expr: &Expr,
) -> Option<(usize, ScalarValue)> {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) = expr else { return None };
    let (column, constant) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), other) | (other, Expr::Column(c)) if other.column_refs().is_empty() => (c, other),
        _ => return None,
    };
    let index = schema.index_of_column(column).ok()?;
    let data_type = schema.field(index).data_type().clone();
    // No column: the expression is a constant; evaluate it on a one-row batch of nothing.
    let physical = state.create_physical_expr(constant.clone(), schema).ok()?;
    let empty = RecordBatch::try_new_with_options(
        Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        vec![],
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .ok()?;
    let value = match physical.evaluate(&empty).ok()? {
        datafusion::logical_expr::ColumnarValue::Scalar(s) => s,
        datafusion::logical_expr::ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0).ok()?,
    };
    // NULL never equals: the gate passes nothing, which the general path handles.
    if value.is_null() {
        return None;
    }
    Some((index, value.cast_to(&data_type).ok()?))
}

/// Rows of one table (all its live columns, as committed) as a column batch.
pub struct ChangeRows {
    batch: RecordBatch,
}

impl ChangeRows {
    /// `rows` hold the table's physical columns (as the change feed gives them).
    pub fn new(def: &TableDef, rows: &[&[Value]]) -> SqlResult<ChangeRows> {
        let schema: SchemaRef = Arc::new(policy::table_df_schema(def, None)?.as_arrow().clone());
        let positions: Vec<Option<usize>> = def.live_columns().map(|(i, _)| Some(i)).collect();
        let rows: Vec<(u64, bkg_kernel::Row)> = rows.iter().map(|r| (0, bkg_kernel::Row::from(r.to_vec()))).collect();
        let batches = crate::provider::rows_to_batches(def, &schema, &positions, &rows)?;
        let batch = match batches.len() {
            0 => RecordBatch::new_empty(schema),
            1 => batches.into_iter().next().expect("one batch"),
            _ => datafusion::arrow::compute::concat_batches(&schema, &batches)?,
        };
        Ok(ChangeRows { batch })
    }

    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// The value of live column `column` in row `row`.
    pub fn value(&self, column: usize, row: usize) -> SqlResult<ScalarValue> {
        Ok(ScalarValue::try_from_array(self.batch.column(column), row)?)
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// Row `i` as a JSON object `{"column": value, ...}` in the shapes of PostgreSQL's `to_json`.
    pub fn record_json(&self, i: usize) -> SqlResult<String> {
        let mut out = String::new();
        crate::pg_format::json::row_object(&self.batch, i, &mut out)?;
        Ok(out)
    }
}

/// The live columns of `def` as `[{"name": ..., "type": <udt name>}]`.
pub fn columns_json(def: &TableDef) -> serde_json::Value {
    def.live_columns()
        .map(|(_, c)| serde_json::json!({"name": c.name, "type": crate::pg_catalog::udt_name(&c.data_type)}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::EngineConfig;

    async fn engine() -> (Arc<Engine>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(bkg_kernel::db::Options::new(dir.path()), EngineConfig::default()).unwrap();
        let mut s = engine.session("postgres");
        for sql in [
            "CREATE ROLE authenticated NOLOGIN",
            "CREATE ROLE app LOGIN",
            "GRANT authenticated TO app",
            "CREATE TABLE notes (id int PRIMARY KEY, owner text, room int, body jsonb)",
            "GRANT SELECT ON notes TO authenticated",
            "ALTER TABLE notes ENABLE ROW LEVEL SECURITY",
            "CREATE POLICY own ON notes FOR SELECT TO authenticated USING (owner = auth.uid()::text)",
            "CREATE TABLE secret (id int)",
        ] {
            s.execute_one(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        (engine, dir)
    }

    fn row(id: i32, owner: &str, room: i32) -> Vec<Value> {
        vec![Value::Int32(id), Value::Text(owner.into()), Value::Int32(room), Value::Text(r#"{"a":1}"#.into())]
    }

    #[tokio::test]
    async fn gates_pass_what_the_viewer_may_select() {
        let (engine, _dir) = engine().await;
        let cat = engine.catalog();
        let notes = cat.find_table("public", "notes").unwrap().clone();
        let rows = [row(1, "u1", 7), row(2, "u2", 7), row(3, "u1", 8)];
        let refs: Vec<&[Value]> = rows.iter().map(|r| r.as_slice()).collect();
        let batch = ChangeRows::new(&notes, &refs).unwrap();
        let viewer = |sub: &str| engine.viewer("app", Some(serde_json::json!({"sub": sub, "role": "app"}))).unwrap();
        let u1 = RowGate::compile(&engine, &cat, &viewer("u1"), &notes, None).unwrap();
        assert_eq!(u1.evaluate(&batch).unwrap(), [true, false, true]);
        let u1_room = RowGate::compile(&engine, &cat, &viewer("u1"), &notes, Some("room = '8'")).unwrap();
        assert_eq!(u1_room.evaluate(&batch).unwrap(), [false, false, true]);
        let u2 = RowGate::compile(&engine, &cat, &viewer("u2"), &notes, None).unwrap();
        assert_eq!(u2.evaluate(&batch).unwrap(), [false, true, false]);
        // A per-user policy alone is an equality the caller can index; with a filter it is not.
        let (col, value) = u1.equality().expect("owner = 'u1'");
        assert_eq!((col, value.to_string()), (1, "u1".to_string()));
        assert_eq!(batch.value(col, 0).unwrap(), *value);
        assert!(u1_room.equality().is_none());
        // Same principal values, same key; different ones, different keys.
        let u1_again = RowGate::compile(&engine, &cat, &viewer("u1"), &notes, None).unwrap();
        assert_eq!(u1.key(), u1_again.key());
        assert_ne!(u1.key(), u2.key());
        // The owner (a superuser here) is not subject to the policy.
        let admin = engine.viewer("postgres", None).unwrap();
        let all = RowGate::compile(&engine, &cat, &admin, &notes, None).unwrap();
        assert_eq!(all.evaluate(&batch).unwrap(), [true, true, true]);
        // No SELECT privilege: no gate at all.
        let secret = cat.find_table("public", "secret").unwrap();
        let err = RowGate::compile(&engine, &cat, &viewer("u1"), secret, None).unwrap_err();
        assert_eq!(err.code, SqlState::InsufficientPrivilege);
        // A filter on a column that does not exist.
        assert!(RowGate::compile(&engine, &cat, &viewer("u1"), &notes, Some("nope = '1'")).is_err());
        assert!(engine.viewer("nobody", None).is_err());
        assert_eq!(batch.record_json(0).unwrap(), r#"{"id":1,"owner":"u1","room":7,"body":{"a":1}}"#);
        assert_eq!(columns_json(&notes)[3], serde_json::json!({"name": "body", "type": "jsonb"}));
    }

    #[tokio::test]
    async fn private_channels_are_decided_by_policies_on_realtime_messages() {
        let (engine, _dir) = engine().await;
        let viewer = |sub: &str| engine.viewer("app", Some(serde_json::json!({"sub": sub, "role": "app"}))).unwrap();
        // Without the table: a clear error, not a silent refusal.
        let missing = engine.channel_access(&viewer("u1"), "room-u1", "broadcast").unwrap_err();
        assert_eq!(missing.code, SqlState::UndefinedTable);
        crate::migrate::apply(&engine, &crate::migrate::builtin()).await.unwrap();
        // Row security on and no policy: nobody but a bypassing role passes.
        let none = engine.channel_access(&viewer("u1"), "room-u1", "broadcast").unwrap();
        assert_eq!(none, ChannelAccess { read: false, write: false });
        let mut s = engine.session("postgres");
        for sql in [
            "CREATE POLICY room_read ON realtime.messages FOR SELECT TO authenticated \
             USING (realtime.topic() = 'room-' || auth.uid() AND extension = 'broadcast')",
            "CREATE POLICY room_send ON realtime.messages FOR INSERT TO authenticated \
             WITH CHECK ((SELECT realtime.topic()) = 'room-' || auth.uid())",
        ] {
            s.execute_one(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let access = |sub: &str, topic: &str, ext: &str| {
            let a = engine.channel_access(&viewer(sub), topic, ext).unwrap();
            (a.read, a.write)
        };
        assert_eq!(access("u1", "room-u1", "broadcast"), (true, true));
        assert_eq!(access("u1", "room-u1", "presence"), (false, true));
        assert_eq!(access("u1", "room-u2", "broadcast"), (false, false));
        assert_eq!(access("u2", "room-u2", "broadcast"), (true, true));
        // A role the policies are not for; the superuser bypasses them.
        s.execute_one("CREATE ROLE other NOLOGIN").await.unwrap();
        let other = engine.viewer("other", Some(serde_json::json!({"sub": "u1"}))).unwrap();
        assert_eq!(engine.channel_access(&other, "room-u1", "broadcast").unwrap(), ChannelAccess::default());
        let admin = engine.viewer("postgres", None).unwrap();
        assert_eq!(
            engine.channel_access(&admin, "room-u1", "broadcast").unwrap(),
            ChannelAccess { read: true, write: true }
        );
        // In a query, realtime.topic() is NULL: stored messages are not readable by topic alone.
        let mut q = engine.session("postgres");
        let out = q.execute_one("SELECT realtime.topic() IS NULL").await.unwrap();
        assert!(format!("{out:?}").contains("true"), "{out:?}");
    }
}

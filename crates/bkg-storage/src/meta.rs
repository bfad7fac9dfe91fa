//! Object and bucket metadata: rows of `storage.objects` and `storage.buckets`, read and
//! written with SQL statements on a session of the caller's principal, so privileges and
//! row-level security policies decide every operation exactly as they decide a query (one
//! policy engine). Only what the API itself needs to know regardless of the caller (does a
//! bucket exist, is it public, its limits; the object a valid signed URL names) is read as the
//! server's own superuser.

use std::sync::Arc;

use bkg_sql::quote::literal;
use bkg_sql::{Engine, Output, Session, SqlResult};
use serde_json::{Map, Value};

/// The principal a request acts for: a role and its token's claims.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: String,
    pub claims: Map<String, Value>,
}

impl Caller {
    /// The user id (`sub`), if the token names one.
    pub fn sub(&self) -> Option<&str> {
        self.claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// A session acting for this principal: its role's privileges, its claims bound for policies.
    pub fn session(&self, engine: &Arc<Engine>) -> Session {
        let mut s = engine.session(&self.role);
        s.set_claims(Some(Value::Object(self.claims.clone())));
        s
    }
}

/// The server's own session (a superuser: no policy applies).
pub fn system(engine: &Arc<Engine>) -> Session {
    engine.session("postgres")
}

/// The rows of a query as JSON objects (values in PostgreSQL's `to_json` shapes).
/// Runs a bucket change as the caller in one transaction with its audit event (recorded only
/// when a row changed, and only if the change commits); the rows it returned.
pub async fn audited_rows(
    session: &mut Session,
    sql: &str,
    action: &str,
    object: &str,
    detail: impl FnOnce(&[Map<String, Value>]) -> Value,
) -> SqlResult<Vec<Map<String, Value>>> {
    session.execute_one("BEGIN").await?;
    let result = async {
        let out = rows(session, sql).await?;
        if !out.is_empty() {
            session.audit(action, object, detail(&out))?;
        }
        Ok(out)
    }
    .await;
    match result {
        Ok(out) => {
            session.execute_one("COMMIT").await?;
            Ok(out)
        }
        Err(e) => {
            let _ = session.execute_one("ROLLBACK").await;
            Err(e)
        }
    }
}

pub async fn rows(session: &mut Session, sql: &str) -> SqlResult<Vec<Map<String, Value>>> {
    match session.execute_one(sql).await? {
        Output::Rows { batches, .. } => {
            let mut out = Vec::new();
            for b in &batches {
                for i in 0..b.num_rows() {
                    let mut text = String::new();
                    bkg_sql::pg_format::json::row_object(b, i, &mut text)?;
                    let row = serde_json::from_str(&text)
                        .map_err(|e| bkg_sql::SqlError::internal(format!("a row as JSON: {e}")))?;
                    out.push(row);
                }
            }
            Ok(out)
        }
        _ => Ok(vec![]),
    }
}

/// Runs `sql` in a transaction that is rolled back: whether the caller's privileges and
/// policies would let it through, without keeping anything.
pub async fn dry_run(session: &mut Session, sql: &str) -> SqlResult<()> {
    session.execute_one("BEGIN").await?;
    let r = session.execute_one(sql).await;
    let _ = session.execute_one("ROLLBACK").await;
    r.map(|_| ())
}

/// A bucket's settings.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub id: String,
    pub public: bool,
    pub file_size_limit: Option<u64>,
    pub allowed_mime_types: Option<Vec<String>>,
}

pub const BUCKET_COLUMNS: &str =
    "id, name, owner, owner_id, public, file_size_limit, allowed_mime_types, created_at, updated_at";

impl Bucket {
    fn from_row(r: &Map<String, Value>) -> Bucket {
        Bucket {
            id: r.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            public: r.get("public").and_then(Value::as_bool).unwrap_or(false),
            file_size_limit: r.get("file_size_limit").and_then(Value::as_u64),
            allowed_mime_types: r
                .get("allowed_mime_types")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()),
        }
    }

    /// The bucket `id`, read as the server (whether the caller may see it is a separate matter).
    pub async fn find(engine: &Arc<Engine>, id: &str) -> SqlResult<Option<Bucket>> {
        let sql = format!("SELECT {BUCKET_COLUMNS} FROM storage.buckets WHERE id = {}", literal(id));
        Ok(rows(&mut system(engine), &sql).await?.first().map(Bucket::from_row))
    }

    /// Whether `content_type` may be stored here (`image/*` matches every image type).
    pub fn allows_mime(&self, content_type: &str) -> bool {
        let Some(allowed) = &self.allowed_mime_types else { return true };
        if allowed.is_empty() {
            return true;
        }
        let ct = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        allowed.iter().any(|a| {
            let a = a.trim().to_ascii_lowercase();
            a == ct || a == "*/*" || a.strip_suffix("/*").is_some_and(|major| ct.split('/').next() == Some(major))
        })
    }
}

/// The columns of an object row the API reads.
pub const OBJECT_COLUMNS: &str = "id, bucket_id, name, owner, owner_id, version, metadata, user_metadata, \
     created_at, updated_at, last_accessed_at";

/// An object's row.
#[derive(Debug, Clone)]
pub struct Object {
    pub row: Map<String, Value>,
}

impl Object {
    pub fn version(&self) -> &str {
        self.text("version").unwrap_or_default()
    }
    pub fn text(&self, k: &str) -> Option<&str> {
        self.row.get(k).and_then(Value::as_str)
    }
    pub fn meta(&self, k: &str) -> Option<&Value> {
        self.row.get("metadata").and_then(|m| m.get(k))
    }
    pub fn size(&self) -> u64 {
        self.meta("size").and_then(Value::as_u64).unwrap_or(0)
    }

    /// The object `name` of `bucket`, as `session` may see it.
    pub async fn find(session: &mut Session, bucket: &str, name: &str) -> SqlResult<Option<Object>> {
        let sql = format!(
            "SELECT {OBJECT_COLUMNS} FROM storage.objects WHERE bucket_id = {} AND name = {}",
            literal(bucket),
            literal(name)
        );
        Ok(rows(session, &sql).await?.into_iter().next().map(|row| Object { row }))
    }
}

/// Runs an upload's statement as `session`: the number of rows it wrote.
pub async fn write(session: &mut Session, o: &NewObject<'_>, conflict: Conflict) -> SqlResult<u64> {
    match session.execute_one(&write_sql(o, conflict)).await? {
        Output::Command { rows, .. } => Ok(rows.unwrap_or(0)),
        _ => Ok(0),
    }
}

/// Every version the metadata refers to (for the collector).
pub async fn live_versions(engine: &Arc<Engine>) -> SqlResult<std::collections::HashSet<String>> {
    let rows = rows(&mut system(engine), "SELECT version FROM storage.objects").await?;
    Ok(rows.iter().filter_map(|r| r.get("version").and_then(Value::as_str).map(str::to_string)).collect())
}

/// Whether any row still refers to `version`.
pub async fn version_in_use(engine: &Arc<Engine>, version: &str) -> SqlResult<bool> {
    let sql = format!("SELECT 1 AS one FROM storage.objects WHERE version = {}", literal(version));
    Ok(!rows(&mut system(engine), &sql).await?.is_empty())
}

/// The values of a new object row.
#[derive(Debug, Clone)]
pub struct NewObject<'a> {
    /// The row's id (kept by an upsert that replaces an existing object).
    pub id: &'a str,
    pub bucket: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub owner: Option<&'a str>,
    pub metadata: &'a Value,
    pub user_metadata: Option<&'a Value>,
}

/// How an upload meets an existing object of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// A new object: an existing one is 409.
    Refuse,
    /// Insert or replace (`x-upsert: true`): INSERT and, on conflict, UPDATE policies apply.
    Upsert,
    /// Replace an existing object only (`PUT`): UPDATE policies apply; none is 404.
    Replace,
}

fn json_literal(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "NULL".into(),
        Some(v) => literal(&v.to_string()),
    }
}

/// The statement that records an upload. It returns nothing, so that a plain upload needs
/// only INSERT policies (RETURNING would need the new row to pass SELECT policies too); its
/// count says whether `Replace` found the object.
pub fn write_sql(o: &NewObject, conflict: Conflict) -> String {
    let owner_uuid = o.owner.filter(|s| is_uuid(s)).map(literal).unwrap_or_else(|| "NULL".into());
    let owner_id = o.owner.map(literal).unwrap_or_else(|| "NULL".into());
    let (b, n, v) = (literal(o.bucket), literal(o.name), literal(o.version));
    let (m, um) = (json_literal(Some(o.metadata)), json_literal(o.user_metadata));
    match conflict {
        Conflict::Replace => format!(
            "UPDATE storage.objects SET version = {v}, metadata = {m}, user_metadata = {um}, owner = {owner_uuid}, \
             owner_id = {owner_id}, updated_at = now(), last_accessed_at = now() \
             WHERE bucket_id = {b} AND name = {n}"
        ),
        Conflict::Refuse | Conflict::Upsert => {
            let mut sql = format!(
                "INSERT INTO storage.objects (id, bucket_id, name, owner, owner_id, version, metadata, user_metadata, path_tokens) \
                 VALUES ({}, {b}, {n}, {owner_uuid}, {owner_id}, {v}, {m}, {um}, string_to_array({n}, '/'))",
                literal(o.id)
            );
            if conflict == Conflict::Upsert {
                sql.push_str(
                    " ON CONFLICT (bucket_id, name) DO UPDATE SET version = excluded.version, metadata = excluded.metadata, \
                     user_metadata = excluded.user_metadata, owner = excluded.owner, owner_id = excluded.owner_id, \
                     updated_at = now(), last_accessed_at = now()",
                );
            }
            sql
        }
    }
}

pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_types_match_with_wildcards() {
        let b = |a: Option<Vec<&str>>| Bucket {
            id: "b".into(),
            public: false,
            file_size_limit: None,
            allowed_mime_types: a.map(|v| v.into_iter().map(str::to_string).collect()),
        };
        assert!(b(None).allows_mime("anything/at-all"));
        let images = b(Some(vec!["image/*", "text/plain"]));
        assert!(images.allows_mime("image/png"));
        assert!(images.allows_mime("Image/JPEG; q=1"));
        assert!(images.allows_mime("text/plain;charset=UTF-8"));
        assert!(!images.allows_mime("text/html"));
        assert!(!images.allows_mime("imagex/png"));
    }

    #[test]
    fn statements_quote_every_value() {
        let meta = serde_json::json!({"size": 1});
        let o = NewObject {
            id: "00000000-0000-4000-8000-000000000002",
            bucket: "b'x",
            name: "a/it's.txt",
            version: "v",
            owner: Some("00000000-0000-4000-8000-000000000001"),
            metadata: &meta,
            user_metadata: None,
        };
        let sql = write_sql(&o, Conflict::Upsert);
        assert!(sql.contains("'b''x'") && sql.contains("'a/it''s.txt'") && sql.contains("ON CONFLICT"), "{sql}");
        assert!(write_sql(&NewObject { owner: Some("not-a-uuid"), ..o.clone() }, Conflict::Refuse).contains(
            "path_tokens) VALUES ('00000000-0000-4000-8000-000000000002', 'b''x', 'a/it''s.txt', NULL, 'not-a-uuid'"
        ));
        assert!(write_sql(&o, Conflict::Replace).starts_with("UPDATE"));
        assert!(is_uuid("00000000-0000-4000-8000-000000000001") && !is_uuid("0000"));
    }
}

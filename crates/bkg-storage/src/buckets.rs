//! Buckets: list, get, create, update, empty, delete — statements on `storage.buckets` run as
//! the caller, so its policies decide (a service role key bypasses them, as for tables).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use bkg_sql::quote::literal;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{Op, StorageError, StorageResult};
use crate::limits::BUCKETS_LIST_MAX;
use crate::meta::{self, BUCKET_COLUMNS, Caller};
use crate::{Storage, names};

fn op(action: &'static str, bucket: &str, caller: &Caller, command: &'static str) -> Op {
    Op {
        action,
        bucket: bucket.to_string(),
        object: None,
        role: caller.role.clone(),
        command,
        table: "storage.buckets",
    }
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct ListQuery {
    limit: Option<usize>,
    offset: Option<usize>,
    search: Option<String>,
    #[serde(rename = "sortColumn")]
    sort_column: Option<String>,
    #[serde(rename = "sortOrder")]
    sort_order: Option<String>,
}

/// The buckets the caller may see.
#[utoipa::path(get, operation_id = "storage_list_buckets", path = "/storage/v1/bucket", tag = "storage",
    params(("limit" = Option<usize>, Query), ("offset" = Option<usize>, Query), ("search" = Option<String>, Query),
           ("sortColumn" = Option<String>, Query), ("sortOrder" = Option<String>, Query)),
    responses((status = 200, description = "[{id, name, owner, public, file_size_limit, allowed_mime_types, created_at, updated_at}]", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn list(
    State(s): State<Arc<Storage>>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> StorageResult<Json<Vec<Value>>> {
    let caller = s.caller(&headers)?;
    let column = q.sort_column.unwrap_or_else(|| "name".into());
    if !["id", "name", "created_at", "updated_at"].contains(&column.as_str()) {
        return Err(StorageError::bad_request(format!("cannot sort by {column:?}")));
    }
    let order = if q.sort_order.as_deref().is_some_and(|o| o.eq_ignore_ascii_case("desc")) { "DESC" } else { "ASC" };
    let mut sql = format!("SELECT {BUCKET_COLUMNS} FROM storage.buckets");
    if let Some(search) = q.search.filter(|s| !s.is_empty()) {
        sql.push_str(&format!(" WHERE strpos(lower(name), lower({})) > 0", literal(&search)));
    }
    sql.push_str(&format!(
        " ORDER BY {column} {order} LIMIT {} OFFSET {}",
        q.limit.unwrap_or(BUCKETS_LIST_MAX).min(BUCKETS_LIST_MAX),
        q.offset.unwrap_or(0)
    ));
    let rows = meta::rows(&mut caller.session(&s.engine), &sql)
        .await
        .map_err(|e| StorageError::from_sql(e, &op("list buckets", "*", &caller, "SELECT")))?;
    Ok(Json(rows.into_iter().map(Value::Object).collect()))
}

/// One bucket (404 when it does not exist or the caller may not see it).
#[utoipa::path(get, operation_id = "storage_get_bucket", path = "/storage/v1/bucket/{id}", tag = "storage", params(("id" = String, Path)),
    responses((status = 200, description = "The bucket", content_type = "application/json"),
              (status = 404, description = "No such bucket", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn get_one(
    State(s): State<Arc<Storage>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> StorageResult<Json<Value>> {
    let caller = s.caller(&headers)?;
    let sql = format!("SELECT {BUCKET_COLUMNS} FROM storage.buckets WHERE id = {}", literal(&id));
    let rows = meta::rows(&mut caller.session(&s.engine), &sql)
        .await
        .map_err(|e| StorageError::from_sql(e, &op("get bucket", &id, &caller, "SELECT")))?;
    rows.into_iter().next().map(|r| Json(Value::Object(r))).ok_or_else(StorageError::bucket_not_found)
}

#[derive(Debug, Deserialize)]
pub(crate) struct BucketBody {
    id: Option<String>,
    name: Option<String>,
    public: Option<bool>,
    file_size_limit: Option<Value>,
    allowed_mime_types: Option<Vec<String>>,
}

/// `1024`, `"1024"`, `"10KB"`, `"1.5 MB"`, `"2GB"` (binary units) → bytes; `null` → no limit.
pub(crate) fn size_limit(v: &Option<Value>) -> StorageResult<Option<u64>> {
    let bad = || StorageError::bad_request("file_size_limit must be a number of bytes or a size such as \"10MB\"");
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) => {
            let t = s.trim().to_ascii_uppercase();
            let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: f64 = num.parse().map_err(|_| bad())?;
            let mult = match unit.trim() {
                "" | "B" => 1u64,
                "KB" => 1 << 10,
                "MB" => 1 << 20,
                "GB" => 1 << 30,
                "TB" => 1 << 40,
                _ => return Err(bad()),
            };
            Ok(Some((n * mult as f64) as u64))
        }
        Some(_) => Err(bad()),
    }
}

fn settings_sql(b: &BucketBody) -> StorageResult<(String, String, String)> {
    let limit = size_limit(&b.file_size_limit)?.map(|n| n.to_string()).unwrap_or_else(|| "NULL".into());
    let mimes = match &b.allowed_mime_types {
        None => "NULL".to_string(),
        Some(m) if m.len() > 100 || m.iter().any(|t| t.len() > 255) => {
            return Err(StorageError::bad_request("allowed_mime_types: at most 100 types of 255 bytes"));
        }
        Some(m) => format!("ARRAY[{}]::text[]", m.iter().map(|t| literal(t)).collect::<Vec<_>>().join(", ")),
    };
    Ok((b.public.unwrap_or(false).to_string(), limit, mimes))
}

fn body(bytes: &Bytes) -> StorageResult<BucketBody> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::bad_request(format!("invalid JSON body: {e}")))
}

/// Creates a bucket (`INSERT` on storage.buckets as the caller); `{name}`.
#[utoipa::path(post, operation_id = "storage_create_bucket", path = "/storage/v1/bucket", tag = "storage",
    request_body(content_type = "application/json", description = "{\"id\", \"name\", \"public\", \"file_size_limit\", \"allowed_mime_types\"}"),
    responses((status = 200, description = "{\"name\"}", content_type = "application/json"),
              (status = 400, description = "An invalid id or setting", content_type = "application/json"),
              (status = 403, description = "No policy allows INSERT on storage.buckets", content_type = "application/json"),
              (status = 409, description = "The bucket exists", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn create(
    State(s): State<Arc<Storage>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> StorageResult<Json<Value>> {
    let caller = s.caller(&headers)?;
    let b = body(&bytes)?;
    let id = b.id.clone().or_else(|| b.name.clone()).unwrap_or_default();
    names::bucket_id(&id)?;
    let name = b.name.clone().unwrap_or_else(|| id.clone());
    let (public, limit, mimes) = settings_sql(&b)?;
    let owner = caller.sub();
    let owner_uuid = owner.filter(|o| meta::is_uuid(o)).map(literal).unwrap_or_else(|| "NULL".into());
    let sql = format!(
        "INSERT INTO storage.buckets (id, name, owner, owner_id, public, file_size_limit, allowed_mime_types) \
         VALUES ({}, {}, {owner_uuid}, {}, {public}, {limit}, {mimes}) RETURNING id",
        literal(&id),
        literal(&name),
        owner.map(literal).unwrap_or_else(|| "NULL".into()),
    );
    let detail = json!({ "public": public, "file_size_limit": limit, "allowed_mime_types": mimes });
    meta::audited_rows(&mut caller.session(&s.engine), &sql, "storage.bucket_create", &id, |_| detail)
        .await
        .map_err(|e| StorageError::from_sql(e, &op("create bucket", &id, &caller, "INSERT")))?;
    Ok(Json(json!({"name": id})))
}

/// Changes a bucket's settings (`UPDATE` as the caller); `{message}`.
#[utoipa::path(put, operation_id = "storage_update_bucket", path = "/storage/v1/bucket/{id}", tag = "storage", params(("id" = String, Path)),
    request_body(content_type = "application/json", description = "{\"public\", \"file_size_limit\", \"allowed_mime_types\"}"),
    responses((status = 200, description = "{\"message\"}", content_type = "application/json"),
              (status = 404, description = "No such bucket (or no UPDATE policy allows it)", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn update(
    State(s): State<Arc<Storage>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> StorageResult<Json<Value>> {
    let caller = s.caller(&headers)?;
    let b = body(&bytes)?;
    let (public, limit, mimes) = settings_sql(&b)?;
    let sql = format!(
        "UPDATE storage.buckets SET public = {public}, file_size_limit = {limit}, allowed_mime_types = {mimes}, \
         updated_at = now() WHERE id = {} RETURNING id",
        literal(&id)
    );
    let detail = json!({ "public": public, "file_size_limit": limit, "allowed_mime_types": mimes });
    let rows = meta::audited_rows(&mut caller.session(&s.engine), &sql, "storage.bucket_update", &id, |_| detail)
        .await
        .map_err(|e| StorageError::from_sql(e, &op("update bucket", &id, &caller, "UPDATE")))?;
    if rows.is_empty() {
        return Err(StorageError::bucket_not_found());
    }
    Ok(Json(json!({"message": "Successfully updated"})))
}

/// Deletes every object of a bucket the caller may delete; `{message}`.
#[utoipa::path(post, operation_id = "storage_empty_bucket", path = "/storage/v1/bucket/{id}/empty", tag = "storage", params(("id" = String, Path)),
    responses((status = 200, description = "{\"message\"}", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn empty(
    State(s): State<Arc<Storage>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> StorageResult<Json<Value>> {
    let caller = s.caller(&headers)?;
    if meta::Bucket::find(&s.engine, &id).await.map_err(|e| StorageError::backend(e.message))?.is_none() {
        return Err(StorageError::bucket_not_found());
    }
    let sql = format!("DELETE FROM storage.objects WHERE bucket_id = {} RETURNING version", literal(&id));
    let count = |r: &[Map<String, Value>]| json!({ "objects_deleted": r.len() });
    let rows = meta::audited_rows(&mut caller.session(&s.engine), &sql, "storage.bucket_empty", &id, count)
        .await
        .map_err(|e| {
            StorageError::from_sql(e, &Op { table: "storage.objects", ..op("empty bucket", &id, &caller, "DELETE") })
        })?;
    for r in rows {
        if let Some(v) = r.get("version").and_then(Value::as_str) {
            crate::gc::release(&s, v).await;
        }
    }
    Ok(Json(json!({"message": "Successfully emptied"})))
}

/// Deletes an empty bucket (409 while it holds objects); `{message}`.
#[utoipa::path(delete, operation_id = "storage_delete_bucket", path = "/storage/v1/bucket/{id}", tag = "storage", params(("id" = String, Path)),
    responses((status = 200, description = "{\"message\"}", content_type = "application/json"),
              (status = 404, description = "No such bucket (or no DELETE policy allows it)", content_type = "application/json"),
              (status = 409, description = "The bucket is not empty", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn delete(
    State(s): State<Arc<Storage>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> StorageResult<Json<Value>> {
    let caller = s.caller(&headers)?;
    let what = op("delete bucket", &id, &caller, "DELETE");
    let any = format!("SELECT 1 AS one FROM storage.objects WHERE bucket_id = {} LIMIT 1", literal(&id));
    if !meta::rows(&mut meta::system(&s.engine), &any).await.map_err(|e| StorageError::from_sql(e, &what))?.is_empty() {
        return Err(StorageError::new(
            409,
            "InvalidRequest",
            bkg_sql::SqlState::DependentObjectsStillExist,
            "The bucket you tried to delete is not empty",
        ));
    }
    let sql = format!("DELETE FROM storage.buckets WHERE id = {} RETURNING id", literal(&id));
    let rows = meta::audited_rows(&mut caller.session(&s.engine), &sql, "storage.bucket_delete", &id, |_| Value::Null)
        .await
        .map_err(|e| StorageError::from_sql(e, &what))?;
    if rows.is_empty() {
        return Err(StorageError::bucket_not_found());
    }
    Ok(Json(json!({"message": "Successfully deleted"})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limits_in_bytes_or_units() {
        let l = |v: Value| size_limit(&Some(v));
        assert_eq!(l(json!(1024)).unwrap(), Some(1024));
        assert_eq!(l(json!("10KB")).unwrap(), Some(10 << 10));
        assert_eq!(l(json!("1.5 MB")).unwrap(), Some(3 << 19));
        assert_eq!(l(json!("2gb")).unwrap(), Some(2 << 30));
        assert_eq!(l(Value::Null).unwrap(), None);
        assert!(l(json!("ten")).is_err() && l(json!(-1)).is_err() && l(json!("5 parsecs")).is_err());
    }
}

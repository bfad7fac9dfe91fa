//! Reading and managing objects: download (ranges, conditional requests), HEAD, info, list
//! with folder semantics, remove, move and copy. Every metadata statement runs as the caller.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bkg_sql::quote::literal;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{Op, StorageError, StorageResult};
use crate::limits::{LIST_LIMIT_MAX, REMOVE_NAMES_MAX};
use crate::meta::{self, Bucket, Caller, Object};
use crate::{Storage, names};

#[derive(Debug, Deserialize, Default)]
pub(crate) struct DownloadQuery {
    /// Present: `Content-Disposition: attachment` (with this file name, or the object's).
    pub download: Option<String>,
}

fn op(action: &'static str, bucket: &str, object: Option<&str>, caller: &Caller, command: &'static str) -> Op {
    Op {
        action,
        bucket: bucket.to_string(),
        object: object.map(str::to_string),
        role: caller.role.clone(),
        command,
        table: "storage.objects",
    }
}

/// The object as the caller may see it (404 when it does not exist or policies hide it).
async fn visible(s: &Storage, caller: &Caller, bucket: &str, name: &str) -> StorageResult<Object> {
    names::object_name(name)?;
    let mut session = caller.session(&s.engine);
    Object::find(&mut session, bucket, name)
        .await
        .map_err(|e| StorageError::from_sql(e, &op("download", bucket, Some(name), caller, "SELECT")))?
        .ok_or_else(StorageError::object_not_found)
}

/// Downloads an object (`Range` gives 206; a matching `If-None-Match` 304).
#[utoipa::path(get, operation_id = "storage_download", path = "/storage/v1/object/{bucket}/{name}", tag = "storage",
    params(("bucket" = String, Path), ("name" = String, Path), ("download" = Option<String>, Query, description = "Serve as an attachment, with this file name")),
    responses(
        (status = 200, description = "The bytes"), (status = 206, description = "The requested range"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such object, or no policy lets the caller SELECT it", content_type = "application/json"),
        (status = 416, description = "A range outside the object"),
    ), security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn download(
    State(s): State<Arc<Storage>>,
    Path((bucket, name)): Path<(String, String)>,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> StorageResult<Response> {
    let caller = s.caller(&headers)?;
    let obj = visible(&s, &caller, &bucket, &name).await?;
    serve(&s, &obj, &headers, q.download.as_deref(), false).await
}

/// Whether an object exists for the caller, with its headers and no body.
#[utoipa::path(head, operation_id = "storage_head", path = "/storage/v1/object/{bucket}/{name}", tag = "storage",
    params(("bucket" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "It exists"), (status = 404, description = "It does not (or is hidden)")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn head(
    State(s): State<Arc<Storage>>,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> StorageResult<Response> {
    let caller = s.caller(&headers)?;
    let obj = visible(&s, &caller, &bucket, &name).await?;
    serve(&s, &obj, &headers, None, true).await
}

/// Downloads from a public bucket, without a key.
#[utoipa::path(get, operation_id = "storage_public_download", path = "/storage/v1/object/public/{bucket}/{name}", tag = "storage",
    params(("bucket" = String, Path), ("name" = String, Path), ("download" = Option<String>, Query)),
    responses((status = 200, description = "The bytes"), (status = 404, description = "No such public bucket or object", content_type = "application/json")),
    security(()))]
pub(crate) async fn public_download(
    State(s): State<Arc<Storage>>,
    Path((bucket, name)): Path<(String, String)>,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> StorageResult<Response> {
    names::object_name(&name)?;
    let sql_err = |e: bkg_sql::SqlError| StorageError::backend(e.message);
    let b = Bucket::find(&s.engine, &bucket).await.map_err(sql_err)?;
    if !b.is_some_and(|b| b.public) {
        return Err(StorageError::bucket_not_found());
    }
    let obj = Object::find(&mut meta::system(&s.engine), &bucket, &name)
        .await
        .map_err(sql_err)?
        .ok_or_else(StorageError::object_not_found)?;
    serve(&s, &obj, &headers, q.download.as_deref(), false).await
}

/// A single `bytes=` range of an object of `size` bytes: `Ok(None)` for none (or one this
/// server serves whole: several ranges), `Err` when it lies outside the object.
pub(crate) fn parse_range(h: Option<&str>, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = h.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            size.saturating_sub(n)..size
        }
        (false, _) => {
            let start: u64 = a.parse().map_err(|_| ())?;
            let end = if b.is_empty() { size } else { b.parse::<u64>().map_err(|_| ())?.saturating_add(1).min(size) };
            if start >= size || end <= start {
                return Err(());
            }
            start..end
        }
        (true, true) => return Err(()),
    };
    Ok(Some(range))
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if_none_match.split(',').any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

/// `attachment; filename=...` (ASCII) and `filename*=` (UTF-8, percent-encoded).
fn disposition(name: &str) -> String {
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Streams an object's bytes with its headers (the span covers finding and opening them; the
/// body streams after it).
#[tracing::instrument(target = "bkg_span", level = "debug", name = "storage.download", skip_all,
    fields(storage.object = obj.text("name").unwrap_or_default(), storage.bytes = i64::try_from(obj.size()).unwrap_or(i64::MAX)))]
pub(crate) async fn serve(
    s: &Storage,
    obj: &Object,
    headers: &HeaderMap,
    download: Option<&str>,
    head_only: bool,
) -> StorageResult<Response> {
    let size = obj.size();
    let etag = obj.meta("eTag").and_then(Value::as_str).unwrap_or("").to_string();
    let mut h = HeaderMap::new();
    let mut set = |k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(header::CONTENT_TYPE, obj.meta("mimetype").and_then(Value::as_str).unwrap_or("application/octet-stream"));
    set(header::CACHE_CONTROL, obj.meta("cacheControl").and_then(Value::as_str).unwrap_or("no-cache"));
    set(header::ACCEPT_RANGES, "bytes");
    if !etag.is_empty() {
        set(header::ETAG, &etag);
    }
    if let Some(t) =
        obj.meta("lastModified").and_then(Value::as_str).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        set(header::LAST_MODIFIED, &t.with_timezone(&chrono::Utc).format("%a, %d %b %Y %H:%M:%S GMT").to_string());
    }
    if let Some(d) = download {
        let file = if d.is_empty() { obj.text("name").map(crate::sign::file_name).unwrap_or("download") } else { d };
        set(header::CONTENT_DISPOSITION, &disposition(file));
    }
    let inm = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    if !etag.is_empty() && inm.is_some_and(|v| etag_matches(v, &etag)) {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    let range = match parse_range(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), size) {
        Ok(r) => r,
        Err(()) => {
            set(header::CONTENT_RANGE, &format!("bytes */{size}"));
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, h).into_response());
        }
    };
    let (status, len) = match &range {
        Some(r) => {
            set(header::CONTENT_RANGE, &format!("bytes {}-{}/{size}", r.start, r.end - 1));
            (StatusCode::PARTIAL_CONTENT, r.end - r.start)
        }
        None => (StatusCode::OK, size),
    };
    set(header::CONTENT_LENGTH, &len.to_string());
    if head_only || len == 0 {
        return Ok((status, h, Body::empty()).into_response());
    }
    let stream = s.backend.get(obj.version(), range).await?;
    crate::metrics::add(&s.metrics.downloads, 1);
    crate::metrics::add(&s.metrics.download_bytes, len);
    Ok((status, h, Body::from_stream(stream)).into_response())
}

/// An object's details (`id`, `name`, `size`, `content_type`, `etag`, `metadata`, ...).
#[utoipa::path(get, operation_id = "storage_info", path = "/storage/v1/object/info/{bucket}/{name}", tag = "storage",
    params(("bucket" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "The object's details", content_type = "application/json"),
              (status = 404, description = "No such object (or hidden)", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn info(
    State(s): State<Arc<Storage>>,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> StorageResult<Json<Value>> {
    let caller = s.caller(&headers)?;
    let o = visible(&s, &caller, &bucket, &name).await?;
    let g = |k: &str| o.row.get(k).cloned().unwrap_or(Value::Null);
    let m = |k: &str| o.meta(k).cloned().unwrap_or(Value::Null);
    Ok(Json(json!({
        "id": g("id"), "version": g("version"), "name": g("name"), "bucket_id": g("bucket_id"),
        "owner": g("owner_id"), "created_at": g("created_at"), "updated_at": g("updated_at"),
        "last_accessed_at": g("last_accessed_at"), "size": m("size"), "cache_control": m("cacheControl"),
        "content_type": m("mimetype"), "etag": m("eTag"), "last_modified": m("lastModified"),
        "metadata": g("user_metadata"),
    })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SortBy {
    column: Option<String>,
    order: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListBody {
    prefix: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    #[serde(rename = "sortBy")]
    sort_by: Option<SortBy>,
    search: Option<String>,
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> StorageResult<T> {
    serde_json::from_slice(body).map_err(|e| StorageError::bad_request(format!("invalid JSON body: {e}")))
}

/// The entries of one folder: the objects directly in it and its subfolders (as storage-js
/// lists them: a folder has `id` null), filtered by `search` (a case-insensitive prefix of the
/// entry's name), sorted, then `offset`/`limit`.
#[utoipa::path(post, operation_id = "storage_list_objects", path = "/storage/v1/object/list/{bucket}", tag = "storage",
    params(("bucket" = String, Path)),
    request_body(content_type = "application/json", description = "{\"prefix\", \"limit\", \"offset\", \"sortBy\": {\"column\", \"order\"}, \"search\"}"),
    responses((status = 200, description = "[{name, id, updated_at, created_at, last_accessed_at, metadata}]", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn list(
    State(s): State<Arc<Storage>>,
    Path(bucket): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StorageResult<Json<Vec<Value>>> {
    let caller = s.caller(&headers)?;
    let req: ListBody = if body.is_empty() { json_body(&Bytes::from_static(b"{}"))? } else { json_body(&body)? };
    let mut prefix = req.prefix.unwrap_or_default().trim_start_matches('/').to_string();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    let sql = format!(
        "SELECT name, id, updated_at, created_at, last_accessed_at, metadata FROM storage.objects \
         WHERE bucket_id = {} AND starts_with(name, {})",
        literal(&bucket),
        literal(&prefix)
    );
    let rows = meta::rows(&mut caller.session(&s.engine), &sql)
        .await
        .map_err(|e| StorageError::from_sql(e, &op("list", &bucket, None, &caller, "SELECT")))?;
    let search = req.search.unwrap_or_default().to_lowercase();
    let mut folders = std::collections::BTreeSet::new();
    let mut files = Vec::new();
    for mut r in rows {
        let full = r.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let rest = &full[prefix.len().min(full.len())..];
        let (entry, is_folder) = match rest.split_once('/') {
            Some((folder, _)) => (folder.to_string(), true),
            None => (rest.to_string(), false),
        };
        if !entry.to_lowercase().starts_with(&search) {
            continue;
        }
        if is_folder {
            folders.insert(entry);
        } else {
            r.insert("name".into(), Value::String(entry));
            files.push(r);
        }
    }
    let sort = req.sort_by.unwrap_or(SortBy { column: None, order: None });
    let column = sort.column.unwrap_or_else(|| "name".into());
    if !["name", "created_at", "updated_at", "last_accessed_at"].contains(&column.as_str()) {
        return Err(StorageError::bad_request(format!("cannot sort by {column:?}")));
    }
    let desc = sort.order.as_deref().is_some_and(|o| o.eq_ignore_ascii_case("desc"));
    let key = |r: &Map<String, Value>| r.get(&column).map(|v| v.to_string()).unwrap_or_default();
    files.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| key_name(a).cmp(&key_name(b))));
    let folder_entry = |n: String| json!({"name": n, "id": null, "updated_at": null, "created_at": null, "last_accessed_at": null, "metadata": null});
    let mut out: Vec<Value> = folders.into_iter().map(folder_entry).collect();
    if desc {
        out.reverse();
        files.reverse();
    }
    if column == "name" {
        out.extend(files.into_iter().map(Value::Object));
        out.sort_by(|a, b| {
            let (x, y) = (a["name"].as_str().unwrap_or(""), b["name"].as_str().unwrap_or(""));
            if desc { y.cmp(x) } else { x.cmp(y) }
        });
    } else {
        out.extend(files.into_iter().map(Value::Object));
    }
    let limit = req.limit.unwrap_or(100).min(LIST_LIMIT_MAX);
    Ok(Json(out.into_iter().skip(req.offset.unwrap_or(0)).take(limit).collect()))
}

fn key_name(r: &Map<String, Value>) -> String {
    r.get("name").and_then(Value::as_str).unwrap_or_default().to_string()
}

#[derive(Debug, Deserialize)]
pub(crate) struct RemoveBody {
    prefixes: Vec<String>,
}

/// Deletes objects by name; the deleted objects (those the caller's DELETE policies allowed).
#[utoipa::path(delete, operation_id = "storage_remove", path = "/storage/v1/object/{bucket}", tag = "storage",
    params(("bucket" = String, Path)),
    request_body(content_type = "application/json", description = "{\"prefixes\": [names]} (at most 1000)"),
    responses((status = 200, description = "The deleted objects", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn remove(
    State(s): State<Arc<Storage>>,
    Path(bucket): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StorageResult<Json<Vec<Value>>> {
    let caller = s.caller(&headers)?;
    let req: RemoveBody = json_body(&body)?;
    if req.prefixes.len() > REMOVE_NAMES_MAX {
        return Err(StorageError::bad_request(format!("at most {REMOVE_NAMES_MAX} names at once")));
    }
    delete_names(&s, &caller, &bucket, &req.prefixes).await.map(Json)
}

/// Deletes one object; `{message}`.
pub(crate) async fn remove_one(
    State(s): State<Arc<Storage>>,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> StorageResult<Json<Value>> {
    let caller = s.caller(&headers)?;
    names::object_name(&name)?;
    let gone = delete_names(&s, &caller, &bucket, std::slice::from_ref(&name)).await?;
    if gone.is_empty() {
        return Err(StorageError::object_not_found());
    }
    Ok(Json(json!({"message": "Successfully deleted"})))
}

async fn delete_names(s: &Storage, caller: &Caller, bucket: &str, names: &[String]) -> StorageResult<Vec<Value>> {
    if names.is_empty() {
        return Ok(vec![]);
    }
    let list: Vec<String> = names.iter().map(|n| literal(n)).collect();
    let sql = format!(
        "DELETE FROM storage.objects WHERE bucket_id = {} AND name IN ({}) RETURNING {}",
        literal(bucket),
        list.join(", "),
        meta::OBJECT_COLUMNS
    );
    let rows = meta::rows(&mut caller.session(&s.engine), &sql)
        .await
        .map_err(|e| StorageError::from_sql(e, &op("remove", bucket, None, caller, "DELETE")))?;
    let mut out = Vec::with_capacity(rows.len());
    for mut r in rows {
        if let Some(Value::String(v)) = r.remove("version") {
            crate::gc::release(s, &v).await;
        }
        out.push(Value::Object(r));
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MoveBody {
    bucket_id: String,
    source_key: String,
    destination_key: String,
    destination_bucket: Option<String>,
}

/// Renames an object (its bytes stay where they are); `{message}`.
#[utoipa::path(post, operation_id = "storage_move_object", path = "/storage/v1/object/move", tag = "storage",
    request_body(content_type = "application/json", description = "{\"bucketId\", \"sourceKey\", \"destinationKey\", \"destinationBucket\"}"),
    responses((status = 200, description = "{\"message\"}", content_type = "application/json"),
              (status = 404, description = "No such object (or no UPDATE policy allows it)", content_type = "application/json"),
              (status = 409, description = "The destination exists", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn move_object(
    State(s): State<Arc<Storage>>,
    headers: HeaderMap,
    body: Bytes,
) -> StorageResult<Json<Value>> {
    let caller = s.caller(&headers)?;
    let req: MoveBody = json_body(&body)?;
    names::object_name(&req.source_key)?;
    names::object_name(&req.destination_key)?;
    let dest_bucket = req.destination_bucket.clone().unwrap_or_else(|| req.bucket_id.clone());
    let what = op("move", &req.bucket_id, Some(&req.source_key), &caller, "UPDATE");
    if Bucket::find(&s.engine, &dest_bucket).await.map_err(|e| StorageError::from_sql(e, &what))?.is_none() {
        return Err(StorageError::bucket_not_found());
    }
    let d = literal(&req.destination_key);
    let sql = format!(
        "UPDATE storage.objects SET bucket_id = {}, name = {d}, path_tokens = string_to_array({d}, '/'), updated_at = now() \
         WHERE bucket_id = {} AND name = {} RETURNING id",
        literal(&dest_bucket),
        literal(&req.bucket_id),
        literal(&req.source_key)
    );
    let rows = meta::rows(&mut caller.session(&s.engine), &sql).await.map_err(|e| StorageError::from_sql(e, &what))?;
    if rows.is_empty() {
        return Err(StorageError::object_not_found());
    }
    Ok(Json(json!({"message": "Successfully moved"})))
}

/// Copies an object (new bytes, a new row owned by the caller); `{Id, Key}`.
#[utoipa::path(post, operation_id = "storage_copy", path = "/storage/v1/object/copy", tag = "storage",
    request_body(content_type = "application/json", description = "{\"bucketId\", \"sourceKey\", \"destinationKey\", \"destinationBucket\"}"),
    responses((status = 200, description = "{\"Id\", \"Key\"}", content_type = "application/json"),
              (status = 403, description = "No policy allows INSERT of the copy", content_type = "application/json"),
              (status = 404, description = "No such object (or hidden)", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn copy(State(s): State<Arc<Storage>>, headers: HeaderMap, body: Bytes) -> StorageResult<Json<Value>> {
    let caller = s.caller(&headers)?;
    let req: MoveBody = json_body(&body)?;
    names::object_name(&req.destination_key)?;
    let source = visible(&s, &caller, &req.bucket_id, &req.source_key).await?;
    let dest_bucket = req.destination_bucket.clone().unwrap_or_else(|| req.bucket_id.clone());
    let what = op("copy", &dest_bucket, Some(&req.destination_key), &caller, "INSERT");
    if Bucket::find(&s.engine, &dest_bucket).await.map_err(|e| StorageError::from_sql(e, &what))?.is_none() {
        return Err(StorageError::bucket_not_found());
    }
    let version = bkg_sql::pg_catalog::random_uuid();
    let id = bkg_sql::pg_catalog::random_uuid();
    let metadata = source.row.get("metadata").cloned().unwrap_or(Value::Null);
    let row = meta::NewObject {
        id: &id,
        bucket: &dest_bucket,
        name: &req.destination_key,
        version: &version,
        owner: caller.sub(),
        metadata: &metadata,
        user_metadata: source.row.get("user_metadata"),
    };
    let sql = meta::write_sql(&row, meta::Conflict::Refuse);
    let mut session = caller.session(&s.engine);
    meta::dry_run(&mut session, &sql).await.map_err(|e| StorageError::from_sql(e, &what))?;
    s.backend.copy(source.version(), &version).await?;
    match meta::write(&mut session, &row, meta::Conflict::Refuse).await {
        Ok(_) => Ok(Json(json!({"Id": id, "Key": format!("{dest_bucket}/{}", req.destination_key)}))),
        Err(e) => {
            let _ = s.backend.delete(&version).await;
            Err(StorageError::from_sql(e, &what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_http_defines_them() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some(0..4)));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some(5..10)));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some(7..10)));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some(8..10)));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=x-2"), 10), Err(()));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
        assert!(
            etag_matches("\"a\", W/\"b\"", "\"b\"") && etag_matches("*", "\"x\"") && !etag_matches("\"a\"", "\"b\"")
        );
        assert_eq!(disposition("ü a.txt"), "attachment; filename=\"_ a.txt\"; filename*=UTF-8''%C3%BC%20a.txt");
    }
}

//! Uploads: `POST /object/{bucket}/{name}` (new, or replace with `x-upsert: true`) and `PUT`
//! (replace). The body is the object's bytes (with `content-type`, `cache-control` and a
//! base64 JSON `x-metadata`), or a `multipart/form-data` form as storage-js sends a Blob
//! (`cacheControl`, `metadata`, and the file). In order:
//!
//! 1. the bucket must exist and the declared size fit its limit (413 before reading a byte);
//! 2. the caller's policies are asked first, with the statement that will record the object run
//!    and rolled back: a refusal costs no upload and names what refused it;
//! 3. the bytes stream to the backend under a new version key, counted against the limit and
//!    checked against the bucket's MIME types as they arrive;
//! 4. the metadata row is written by the caller's session; if that fails, the bytes are deleted.
//!    The bytes an upsert replaced are deleted once no row refers to them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use bkg_sql::SqlState;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::backend::{BodyError, Stored};
use crate::error::{Op, StorageError, StorageResult};
use crate::limits::{FORM_FIELD_BYTES_MAX, USER_METADATA_BYTES_MAX};
use crate::meta::{self, Bucket, Caller, Conflict, NewObject};
use crate::{Storage, names};

/// Who an upload acts for.
pub(crate) enum Writer<'a> {
    /// The caller's session: its policies decide.
    Caller(&'a Caller),
    /// A signed upload URL: authorised when it was signed; recorded as the server, for `owner`.
    Signed { owner: Option<String> },
}

impl Writer<'_> {
    fn session(&self, s: &Storage) -> bkg_sql::Session {
        match self {
            Writer::Caller(c) => c.session(&s.engine),
            Writer::Signed { .. } => meta::system(&s.engine),
        }
    }
    fn owner(&self) -> Option<String> {
        match self {
            Writer::Caller(c) => c.sub().map(str::to_string),
            Writer::Signed { owner } => owner.clone(),
        }
    }
    fn role(&self) -> String {
        match self {
            Writer::Caller(c) => c.role.clone(),
            Writer::Signed { .. } => "signed upload URL".into(),
        }
    }
}

/// Uploads an object; `{Id, Key}`.
#[utoipa::path(post, operation_id = "storage_upload", path = "/storage/v1/object/{bucket}/{name}", tag = "storage",
    params(("bucket" = String, Path), ("name" = String, Path, description = "The object's name (may contain /)"),
           ("x-upsert" = Option<String>, Header, description = "true: replace an existing object")),
    request_body(content_type = "application/octet-stream", description = "The bytes, or multipart/form-data (cacheControl, metadata, file)"),
    responses(
        (status = 200, description = "{\"Id\", \"Key\"}", content_type = "application/json"),
        (status = 400, description = "An invalid name or body", content_type = "application/json"),
        (status = 403, description = "No policy allows INSERT (or, with upsert, UPDATE) on storage.objects", content_type = "application/json"),
        (status = 404, description = "No such bucket", content_type = "application/json"),
        (status = 409, description = "The object exists (without x-upsert)", content_type = "application/json"),
        (status = 413, description = "Over the bucket's or the server's size limit", content_type = "application/json"),
        (status = 415, description = "A content type the bucket does not allow", content_type = "application/json"),
    ), security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn upload(
    State(s): State<Arc<Storage>>,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> StorageResult<Json<Value>> {
    upload_as_caller(&s, &bucket, &name, &headers, req, Conflict::Refuse).await
}

/// Replaces an existing object (`x-upsert: true`: or creates it); `{Id, Key}`.
#[utoipa::path(put, operation_id = "storage_replace", path = "/storage/v1/object/{bucket}/{name}", tag = "storage",
    params(("bucket" = String, Path), ("name" = String, Path)),
    request_body(content_type = "application/octet-stream", description = "As for POST"),
    responses(
        (status = 200, description = "{\"Id\", \"Key\"}", content_type = "application/json"),
        (status = 403, description = "No policy allows UPDATE on storage.objects", content_type = "application/json"),
        (status = 404, description = "No such bucket or object", content_type = "application/json"),
    ), security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn replace(
    State(s): State<Arc<Storage>>,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> StorageResult<Json<Value>> {
    upload_as_caller(&s, &bucket, &name, &headers, req, Conflict::Replace).await
}

/// `x-upsert: true`.
pub(crate) fn upsert_requested(headers: &HeaderMap) -> bool {
    headers.get("x-upsert").and_then(|v| v.to_str().ok()) == Some("true")
}

/// An upload by the request's caller: `x-upsert: true` makes it an upsert, else `otherwise`.
async fn upload_as_caller(
    s: &Arc<Storage>,
    bucket: &str,
    name: &str,
    headers: &HeaderMap,
    req: Request,
    otherwise: Conflict,
) -> StorageResult<Json<Value>> {
    let caller = s.caller(headers)?;
    let conflict = if upsert_requested(headers) { Conflict::Upsert } else { otherwise };
    let id = store(s, Writer::Caller(&caller), bucket, name, conflict, req).await?;
    Ok(Json(json!({"Id": id, "Key": format!("{bucket}/{name}")})))
}

/// What the request says about the object besides its bytes.
struct Described {
    content_type: String,
    cache_control: String,
    user_metadata: Option<Value>,
}

fn user_metadata(text: &[u8]) -> StorageResult<Value> {
    if text.len() > USER_METADATA_BYTES_MAX {
        return Err(StorageError::bad_request(format!("metadata is over {USER_METADATA_BYTES_MAX} bytes")));
    }
    match serde_json::from_slice::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(StorageError::bad_request("metadata must be a JSON object")),
    }
}

fn described_by_headers(headers: &HeaderMap) -> StorageResult<Described> {
    let h = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let user_metadata = match headers.get("x-metadata").and_then(|v| v.to_str().ok()) {
        None => None,
        Some(b64) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| StorageError::bad_request("x-metadata must be base64-encoded JSON"))?;
            Some(user_metadata(&raw)?)
        }
    };
    Ok(Described {
        content_type: h(header::CONTENT_TYPE).unwrap_or_else(|| "application/octet-stream".into()),
        cache_control: h(header::CACHE_CONTROL).unwrap_or_else(|| "no-cache".into()),
        user_metadata,
    })
}

/// Checks, streams and records one upload; the new row's id. (Its span's target is
/// `bkg_sql::telemetry::SPAN_TARGET`, spelled out as the attribute needs a literal.)
#[tracing::instrument(target = "bkg_span", level = "debug", name = "storage.upload", skip_all,
    fields(storage.bucket = %bucket_id, storage.object = %name))]
pub(crate) async fn store(
    s: &Arc<Storage>,
    writer: Writer<'_>,
    bucket_id: &str,
    name: &str,
    conflict: Conflict,
    req: Request,
) -> StorageResult<String> {
    let m = &s.metrics;
    match store_counted(s, writer, bucket_id, name, conflict, req).await {
        Ok((id, size)) => {
            crate::metrics::add(&m.uploads, 1);
            crate::metrics::add(&m.upload_bytes, size);
            Ok(id)
        }
        Err(e) => {
            crate::metrics::add(&m.uploads_refused, 1);
            Err(e)
        }
    }
}

/// [`store`], with the size stored.
async fn store_counted(
    s: &Arc<Storage>,
    writer: Writer<'_>,
    bucket_id: &str,
    name: &str,
    conflict: Conflict,
    req: Request,
) -> StorageResult<(String, u64)> {
    let name = names::object_name(name)?;
    let op = Op {
        action: "upload",
        bucket: bucket_id.to_string(),
        object: Some(name.to_string()),
        role: writer.role(),
        command: if conflict == Conflict::Replace { "UPDATE" } else { "INSERT" },
        table: "storage.objects",
    };
    let sql_err = |e: bkg_sql::SqlError| StorageError::from_sql(e, &op);
    let bucket =
        Bucket::find(&s.engine, bucket_id).await.map_err(sql_err)?.ok_or_else(StorageError::bucket_not_found)?;
    let limit = bucket.file_size_limit.map_or(s.config.file_size_max, |l| l.min(s.config.file_size_max));
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(StorageError::too_large(limit));
    }
    let owner = writer.owner();
    let version = bkg_sql::pg_catalog::random_uuid();
    let new_id = bkg_sql::pg_catalog::random_uuid();
    let placeholder = json!({});
    let probe = NewObject {
        id: &new_id,
        bucket: bucket_id,
        name,
        version: &version,
        owner: owner.as_deref(),
        metadata: &placeholder,
        user_metadata: None,
    };
    // Ask the policies before taking the bytes.
    let mut session = writer.session(s);
    if conflict == Conflict::Replace
        && meta::Object::find(&mut session, bucket_id, name).await.map_err(sql_err)?.is_none()
    {
        return Err(StorageError::object_not_found());
    }
    meta::dry_run(&mut session, &meta::write_sql(&probe, conflict)).await.map_err(sql_err)?;
    let (stored, described) = receive(s, &bucket, &version, limit, req).await?;
    let metadata = object_metadata(&stored, &described);
    let row = NewObject { metadata: &metadata, user_metadata: described.user_metadata.as_ref(), ..probe };
    // The object this upload replaces, if any: its row keeps its id, its bytes are released.
    let previous = match conflict {
        Conflict::Refuse => None,
        _ => meta::Object::find(&mut meta::system(&s.engine), bucket_id, name).await.ok().flatten(),
    };
    match meta::write(&mut session, &row, conflict).await {
        Ok(0) => {
            let _ = s.backend.delete(&version).await;
            return Err(StorageError::object_not_found());
        }
        Ok(_) => {}
        Err(e) => {
            let _ = s.backend.delete(&version).await;
            return Err(sql_err(e));
        }
    }
    let id = match previous {
        Some(old) => {
            crate::gc::release(s, old.version()).await;
            old.text("id").map(str::to_string).unwrap_or(new_id)
        }
        None => new_id,
    };
    Ok((id, stored.size))
}

/// The metadata recorded with an object (the shape storage clients read).
fn object_metadata(stored: &Stored, d: &Described) -> Value {
    let cache_control = if d.cache_control.chars().all(|c| c.is_ascii_digit()) {
        format!("max-age={}", d.cache_control)
    } else {
        d.cache_control.clone()
    };
    json!({
        "eTag": format!("\"{}\"", stored.md5),
        "size": stored.size,
        "mimetype": d.content_type,
        "cacheControl": cache_control,
        "lastModified": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "contentLength": stored.size,
        "httpStatusCode": 200,
    })
}

fn body_error(e: BodyError) -> StorageError {
    match e {
        BodyError::TooLarge(limit) => StorageError::too_large(limit),
        BodyError::Client(m) => StorageError::bad_request(format!("the upload did not complete: {m}")),
        BodyError::Backend(m) => StorageError::backend(m),
    }
}

fn check_mime(bucket: &Bucket, content_type: &str) -> StorageResult<()> {
    if bucket.allows_mime(content_type) {
        return Ok(());
    }
    Err(StorageError::new(
        415,
        "invalid_mime_type",
        SqlState::PgrstBody,
        format!("mime type {content_type} is not supported by bucket {}", bucket.id),
    ))
}

/// Streams the request's object bytes to the backend as `version`.
async fn receive(
    s: &Arc<Storage>,
    bucket: &Bucket,
    version: &str,
    limit: u64,
    req: Request,
) -> StorageResult<(Stored, Described)> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !multipart {
        let d = described_by_headers(req.headers())?;
        check_mime(bucket, &d.content_type)?;
        let body = Box::pin(req.into_body().into_data_stream());
        let stored = s.backend.put(version, body, limit).await.map_err(body_error)?;
        return Ok((stored, d));
    }
    let mut form = axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|e| StorageError::bad_request(format!("invalid multipart body: {e}")))?;
    let mut d = Described {
        content_type: "application/octet-stream".into(),
        cache_control: "no-cache".into(),
        user_metadata: None,
    };
    let mut stored = None;
    let bad =
        |e: axum::extract::multipart::MultipartError| StorageError::bad_request(format!("invalid multipart body: {e}"));
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let fname = field.name().unwrap_or("").to_string();
        let is_file = field.file_name().is_some() || fname.is_empty() || fname == "file";
        match fname.as_str() {
            "cacheControl" if !is_file => d.cache_control = small_text(field, FORM_FIELD_BYTES_MAX).await?,
            "metadata" if !is_file => {
                d.user_metadata = Some(user_metadata(small_text(field, USER_METADATA_BYTES_MAX).await?.as_bytes())?)
            }
            _ if is_file && stored.is_none() => {
                if let Some(ct) = field.content_type() {
                    d.content_type = ct.to_string();
                }
                check_mime(bucket, &d.content_type)?;
                stored = Some(s.backend.put(version, Box::pin(field), limit).await.map_err(body_error)?);
            }
            _ => {
                // Drain fields nobody reads (bounded by the form's own limits).
                let mut f = field;
                while let Some(chunk) = f.next().await {
                    chunk.map_err(bad)?;
                }
            }
        }
    }
    match stored {
        Some(st) => Ok((st, d)),
        None => Err(StorageError::bad_request("the form has no file")),
    }
}

async fn small_text(field: axum::extract::multipart::Field<'_>, max: usize) -> StorageResult<String> {
    let mut out = Vec::new();
    let mut f = field;
    while let Some(chunk) = f.next().await {
        let chunk = chunk.map_err(|e| StorageError::bad_request(format!("invalid multipart body: {e}")))?;
        if out.len() + chunk.len() > max {
            return Err(StorageError::bad_request(format!("a form field is over {max} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    String::from_utf8(out).map_err(|_| StorageError::bad_request("a form field is not UTF-8"))
}

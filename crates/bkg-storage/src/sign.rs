//! Signed URLs. A download URL carries a token (a JWT signed with the server's current key)
//! naming the bucket and path, what it allows (`typ`) and when it expires; it is created only
//! for an object the caller may SELECT, and it serves that path until it expires — a moved or
//! deleted object is no longer there, a tampered token does not verify, a token of another kind
//! (a session token, an upload token) is refused. An upload URL is created only when the
//! caller's INSERT policies would accept the object, and records the caller as its owner.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bkg_sql::SqlState;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{Op, StorageError, StorageResult};
use crate::limits::SIGN_PATHS_MAX;
use crate::meta::{self, Conflict, NewObject, Object};
use crate::upload::{Writer, store};
use crate::{Storage, names};

const DOWNLOAD: &str = "storage.download";
const UPLOAD: &str = "storage.upload";

/// The last part of an object name.
pub(crate) fn file_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn token(s: &Storage, typ: &str, url: &str, ttl: u64, extra: Map<String, Value>) -> String {
    let mut claims = extra;
    let now = now_s();
    claims.insert("typ".into(), json!(typ));
    claims.insert("url".into(), json!(url));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl));
    s.auth.jwt().sign(&claims)
}

fn invalid(message: impl Into<String>) -> StorageError {
    StorageError::new(400, "InvalidSignature", SqlState::PgrstJwt, message)
}

/// The claims of a token of kind `typ` for `url`, or why it is refused.
fn verify(s: &Storage, token: &str, typ: &str, url: &str) -> StorageResult<Map<String, Value>> {
    let claims = s.auth.jwt().verify(token).map_err(|e| invalid(format!("the signature is invalid: {}", e.0)))?;
    if claims.get("typ").and_then(Value::as_str) != Some(typ) {
        return Err(invalid("the token is not a signed URL of this kind"));
    }
    if claims.get("url").and_then(Value::as_str) != Some(url) {
        return Err(invalid("the token was signed for another object"));
    }
    if claims.get("exp").and_then(Value::as_u64).is_none_or(|e| e <= now_s()) {
        return Err(invalid("the signed URL has expired"));
    }
    Ok(claims)
}

fn url_path(kind: &str, bucket: &str, name: &str, token: &str) -> String {
    format!("/object/{kind}/{bucket}/{name}?token={token}")
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SignBody {
    expires_in: Option<Value>,
    paths: Option<Vec<String>>,
}

fn expires_in(s: &Storage, v: &Option<Value>) -> StorageResult<u64> {
    let n = v.as_ref().and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
    match n {
        Some(n) if n >= 1 && n <= s.config.signed_url_max_s => Ok(n),
        _ => Err(StorageError::bad_request(format!(
            "expiresIn must be a number of seconds from 1 to {}",
            s.config.signed_url_max_s
        ))),
    }
}

fn body(bytes: &Bytes) -> StorageResult<SignBody> {
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| StorageError::bad_request(format!("invalid JSON body: {e}")))
}

/// Signs a download URL for an object the caller may read; `{signedURL}`.
#[utoipa::path(post, operation_id = "storage_sign_one", path = "/storage/v1/object/sign/{bucket}/{name}", tag = "storage",
    params(("bucket" = String, Path), ("name" = String, Path)),
    request_body(content_type = "application/json", description = "{\"expiresIn\": seconds}"),
    responses((status = 200, description = "{\"signedURL\": \"/object/sign/<bucket>/<name>?token=...\"}", content_type = "application/json"),
              (status = 400, description = "expiresIn missing or over BKG_DB_STORAGE_SIGNED_URL_MAX_S", content_type = "application/json"),
              (status = 404, description = "No such object (or hidden)", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn sign_one(
    State(s): State<Arc<Storage>>,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> StorageResult<Json<Value>> {
    let caller = s.caller(&headers)?;
    let ttl = expires_in(&s, &body(&bytes)?.expires_in)?;
    names::object_name(&name)?;
    let mut session = caller.session(&s.engine);
    let what = Op {
        action: "sign",
        bucket: bucket.clone(),
        object: Some(name.clone()),
        role: caller.role.clone(),
        command: "SELECT",
        table: "storage.objects",
    };
    Object::find(&mut session, &bucket, &name)
        .await
        .map_err(|e| StorageError::from_sql(e, &what))?
        .ok_or_else(StorageError::object_not_found)?;
    let t = token(&s, DOWNLOAD, &format!("{bucket}/{name}"), ttl, Map::new());
    Ok(Json(json!({"signedURL": url_path("sign", &bucket, &name, &t)})))
}

/// Signs download URLs for many objects; one `{path, signedURL, error}` per path.
#[utoipa::path(post, operation_id = "storage_sign_many", path = "/storage/v1/object/sign/{bucket}", tag = "storage", params(("bucket" = String, Path)),
    request_body(content_type = "application/json", description = "{\"expiresIn\": seconds, \"paths\": [names]}"),
    responses((status = 200, description = "[{path, signedURL, error}]", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn sign_many(
    State(s): State<Arc<Storage>>,
    Path(bucket): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> StorageResult<Json<Vec<Value>>> {
    let caller = s.caller(&headers)?;
    let b = body(&bytes)?;
    let ttl = expires_in(&s, &b.expires_in)?;
    let paths = b.paths.unwrap_or_default();
    if paths.len() > SIGN_PATHS_MAX {
        return Err(StorageError::bad_request(format!("at most {SIGN_PATHS_MAX} paths at once")));
    }
    let mut session = caller.session(&s.engine);
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let found = match names::object_name(&p) {
            Ok(_) => Object::find(&mut session, &bucket, &p).await.ok().flatten().is_some(),
            Err(_) => false,
        };
        out.push(if found {
            let t = token(&s, DOWNLOAD, &format!("{bucket}/{p}"), ttl, Map::new());
            json!({"path": p, "signedURL": url_path("sign", &bucket, &p, &t), "error": null})
        } else {
            json!({"path": p, "signedURL": null, "error": "Either the object does not exist or you do not have access to it"})
        });
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
    download: Option<String>,
}

/// Downloads through a signed URL (no key needed).
#[utoipa::path(get, operation_id = "storage_signed_download", path = "/storage/v1/object/sign/{bucket}/{name}", tag = "storage",
    params(("bucket" = String, Path), ("name" = String, Path), ("token" = String, Query), ("download" = Option<String>, Query)),
    responses((status = 200, description = "The bytes"),
              (status = 400, description = "A token that is missing, tampered with, expired or for another object", content_type = "application/json"),
              (status = 404, description = "The object is no longer at this path", content_type = "application/json")),
    security(()))]
pub(crate) async fn signed_download(
    State(s): State<Arc<Storage>>,
    Path((bucket, name)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> StorageResult<Response> {
    let t = q.token.ok_or_else(|| invalid("a signed URL needs its token"))?;
    verify(&s, &t, DOWNLOAD, &format!("{bucket}/{name}"))?;
    let obj = Object::find(&mut meta::system(&s.engine), &bucket, &name)
        .await
        .map_err(|e| StorageError::backend(e.message))?
        .ok_or_else(StorageError::object_not_found)?;
    crate::objects::serve(&s, &obj, &headers, q.download.as_deref(), false).await
}

/// Signs an upload URL, when the caller's policies would accept the object; `{url, token}`.
#[utoipa::path(post, operation_id = "storage_sign_upload", path = "/storage/v1/object/upload/sign/{bucket}/{name}", tag = "storage",
    params(("bucket" = String, Path), ("name" = String, Path), ("x-upsert" = Option<String>, Header)),
    responses((status = 200, description = "{\"url\": \"/object/upload/sign/<bucket>/<name>?token=...\", \"token\"}", content_type = "application/json"),
              (status = 403, description = "No policy allows INSERT on storage.objects", content_type = "application/json"),
              (status = 404, description = "No such bucket", content_type = "application/json")),
    security(("apikey" = []), ("bearer" = [])))]
pub(crate) async fn sign_upload(
    State(s): State<Arc<Storage>>,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> StorageResult<Json<Value>> {
    let caller = s.caller(&headers)?;
    names::object_name(&name)?;
    let upsert = crate::upload::upsert_requested(&headers);
    let what = Op {
        action: "sign upload",
        bucket: bucket.clone(),
        object: Some(name.clone()),
        role: caller.role.clone(),
        command: "INSERT",
        table: "storage.objects",
    };
    if meta::Bucket::find(&s.engine, &bucket).await.map_err(|e| StorageError::from_sql(e, &what))?.is_none() {
        return Err(StorageError::bucket_not_found());
    }
    let probe_meta = json!({});
    let probe = NewObject {
        id: "00000000-0000-4000-8000-000000000000",
        bucket: &bucket,
        name: &name,
        version: "probe",
        owner: caller.sub(),
        metadata: &probe_meta,
        user_metadata: None,
    };
    let conflict = if upsert { Conflict::Upsert } else { Conflict::Refuse };
    meta::dry_run(&mut caller.session(&s.engine), &meta::write_sql(&probe, conflict))
        .await
        .map_err(|e| StorageError::from_sql(e, &what))?;
    let mut extra = Map::new();
    extra.insert("owner".into(), caller.sub().map_or(Value::Null, |o| json!(o)));
    extra.insert("upsert".into(), json!(upsert));
    let t = token(&s, UPLOAD, &format!("{bucket}/{name}"), s.config.upload_url_ttl_s, extra);
    Ok(Json(json!({"url": url_path("upload/sign", &bucket, &name, &t), "token": t})))
}

/// Uploads through a signed upload URL (no key needed); `{Key}`.
#[utoipa::path(put, operation_id = "storage_signed_upload", path = "/storage/v1/object/upload/sign/{bucket}/{name}", tag = "storage",
    params(("bucket" = String, Path), ("name" = String, Path), ("token" = String, Query)),
    request_body(content_type = "application/octet-stream", description = "The bytes, or multipart/form-data"),
    responses((status = 200, description = "{\"Key\"}", content_type = "application/json"),
              (status = 400, description = "A token that is missing, tampered with, expired or for another object", content_type = "application/json"),
              (status = 409, description = "The object exists and the URL was not signed for upsert", content_type = "application/json")),
    security(()))]
pub(crate) async fn signed_upload(
    State(s): State<Arc<Storage>>,
    Path((bucket, name)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    req: Request,
) -> StorageResult<Json<Value>> {
    let t = q.token.ok_or_else(|| invalid("a signed URL needs its token"))?;
    let claims = verify(&s, &t, UPLOAD, &format!("{bucket}/{name}"))?;
    let owner = claims.get("owner").and_then(Value::as_str).map(str::to_string);
    let conflict = if claims.get("upsert") == Some(&json!(true)) { Conflict::Upsert } else { Conflict::Refuse };
    let id = store(&s, Writer::Signed { owner }, &bucket, &name, conflict, req).await?;
    Ok(Json(json!({"Id": id, "Key": format!("{bucket}/{name}")})))
}

//! # bkg-storage: buckets and objects at `/storage/v1`, as storage-js speaks to it
//!
//! The storage door of bkg-db. Object metadata lives in `storage.buckets` and
//! `storage.objects` (a built-in migration), so it is queryable like any table; the bytes live
//! in a [`backend::Backend`] (the local file system by default, an S3-compatible bucket by
//! configuration). Every operation on metadata is a SQL statement run on a session of the
//! caller's principal ([`meta::Caller`]), so the privileges and row-level security policies on
//! those tables decide who may upload, download, list, move or delete what — the one policy
//! engine every other door uses. Public buckets serve reads without a key; signed URLs carry a
//! token signed with the server's current key.
//!
//! - [`names`]: which bucket ids and object names are accepted;
//! - [`backend`]: streaming, bounded uploads and ranged downloads through `object_store`;
//! - [`meta`]: the metadata statements; [`gc`]: bytes no row refers to are collected;
//! - `buckets`, `objects`, `upload`, `sign`: the routes; [`limits`] and [`config`]: every bound.
//!
//! Layer rule: like every front door, this crate reaches the database only through `bkg-sql`
//! sessions and `bkg-auth` principals.

pub mod backend;
mod buckets;
pub mod config;
pub mod error;
pub mod gc;
pub mod limits;
pub mod meta;
pub mod metrics;
pub mod names;
mod objects;
mod sign;
mod upload;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use bkg_sql::{Engine, SqlState};

pub use config::{BackendConfig, StorageConfig};
pub use error::{StorageError, StorageResult};
use limits::JSON_BODY_BYTES_MAX;
use meta::Caller;

/// The storage door's shared state.
pub struct Storage {
    pub engine: Arc<Engine>,
    pub auth: Arc<bkg_auth::AuthConfig>,
    pub config: StorageConfig,
    pub backend: backend::Backend,
    pub metrics: metrics::StorageMetrics,
}

impl Storage {
    pub fn open(
        engine: Arc<Engine>,
        auth: Arc<bkg_auth::AuthConfig>,
        config: StorageConfig,
    ) -> Result<Arc<Storage>, String> {
        let backend = backend::Backend::open(&config.backend)?;
        Ok(Arc::new(Storage { engine, auth, config, backend, metrics: metrics::StorageMetrics::default() }))
    }

    /// The caller of a request: the `Authorization: Bearer` token, else the `apikey` header
    /// (401 without either, or when one does not verify); its role must exist and not be a
    /// superuser, as at every door.
    pub(crate) fn caller(&self, headers: &HeaderMap) -> StorageResult<Caller> {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let bearer = h("authorization")
            .map(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")).unwrap_or(a).trim());
        let principal = self.auth.authenticate(h("apikey"), bearer).map_err(|e| match e {
            bkg_auth::AuthFailure::Missing => StorageError::unauthenticated("No API key found in request"),
            bkg_auth::AuthFailure::Invalid(m) => StorageError::new(401, "Unauthorized", SqlState::PgrstJwt, m),
        })?;
        bkg_auth::token_role(&self.engine, &principal.role).map_err(|e| match e {
            bkg_auth::TokenRoleRefusal::Missing(r) => {
                StorageError::new(401, "Unauthorized", SqlState::PgrstJwt, format!("role \"{r}\" does not exist"))
            }
            bkg_auth::TokenRoleRefusal::Superuser(r) => StorageError::new(
                403,
                "Unauthorized",
                SqlState::PgrstJwt,
                format!("role \"{r}\" cannot be used through the API"),
            ),
        })?;
        Ok(Caller { role: principal.role, claims: principal.claims })
    }
}

/// The storage routes in the OpenAPI document (merged into the server's by `bkg-db`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        buckets::list, buckets::create, buckets::get_one, buckets::update, buckets::delete, buckets::empty,
        upload::upload, upload::replace, objects::download, objects::head, objects::public_download,
        objects::info, objects::list, objects::remove, objects::move_object, objects::copy,
        sign::sign_one, sign::sign_many, sign::signed_download, sign::sign_upload, sign::signed_upload,
    ),
    tags((name = "storage", description = "Buckets and objects under row-level security (storage-js)")),
)]
pub struct StorageDoc;

/// Every route under `/storage/v1`.
pub fn router(storage: Arc<Storage>) -> Router {
    let json = DefaultBodyLimit::max(JSON_BODY_BYTES_MAX);
    // Upload bodies are limited while they stream (file size limits), not buffered.
    let stream = DefaultBodyLimit::disable();
    Router::new()
        .route("/storage/v1/bucket", get(buckets::list).post(buckets::create).layer(json))
        .route(
            "/storage/v1/bucket/{id}",
            get(buckets::get_one).put(buckets::update).delete(buckets::delete).layer(json),
        )
        .route("/storage/v1/bucket/{id}/empty", post(buckets::empty).layer(json))
        .route("/storage/v1/object/list/{bucket}", post(objects::list).layer(json))
        .route("/storage/v1/object/move", post(objects::move_object).layer(json))
        .route("/storage/v1/object/copy", post(objects::copy).layer(json))
        .route("/storage/v1/object/info/{bucket}/{*name}", get(objects::info))
        .route("/storage/v1/object/sign/{bucket}", post(sign::sign_many).layer(json))
        .route("/storage/v1/object/sign/{bucket}/{*name}", post(sign::sign_one).get(sign::signed_download).layer(json))
        .route(
            "/storage/v1/object/upload/sign/{bucket}/{*name}",
            post(sign::sign_upload).put(sign::signed_upload).layer(stream),
        )
        .route("/storage/v1/object/public/{bucket}/{*name}", get(objects::public_download))
        .route("/storage/v1/object/authenticated/{bucket}/{*name}", get(objects::download))
        .route("/storage/v1/object/{bucket}", axum::routing::delete(objects::remove).layer(json))
        .route(
            "/storage/v1/object/{bucket}/{*name}",
            post(upload::upload)
                .put(upload::replace)
                .get(objects::download)
                .head(objects::head)
                .delete(objects::remove_one)
                .layer(stream),
        )
        .with_state(storage)
}

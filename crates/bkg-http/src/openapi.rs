//! The OpenAPI 3.1 description of the HTTP API, generated from the handlers' annotations
//! (utoipa). The binary merges in the other doors' routes ([`document`]), serves the result at
//! `/openapi.json`, prints it with `bkg-db openapi` and renders it into `docs/api.md` (a test
//! in `bkg-db` keeps that file equal to [`markdown`]).

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bkg-db HTTP API",
        description = "PostgREST-compatible REST (/rest/v1), SQL over HTTP (/query), users (/auth/v1), row-level security policies (/policy), migrations and operations. Every API request carries the anon or service key in `apikey` and/or a JWT as `Authorization: Bearer`; the token's role decides what the request may do. Errors are `{code, message, details, hint}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:8080", description = "Default --http-listen")),
    paths(
        crate::rest::rows_get, crate::rest::rows_head, crate::rest::rows_post, crate::rest::rows_patch,
        crate::rest::rows_put, crate::rest::rows_delete, crate::rest::rpc_post, crate::rest::rpc_get,
        crate::rest::query::query, crate::rest::export::export, crate::rest::migrations::apply, crate::rest::migrations::status,
        crate::rest::policy::list, crate::rest::policy::get_one, crate::rest::policy::create,
        crate::rest::policy::update, crate::rest::policy::remove, crate::rest::policy::explain,
        crate::rest::audit::list, crate::rest::audit::key, crate::rest::audit::seal, crate::rest::audit::rotate_key,
        crate::rest::audit::verify,
        crate::admin::bootstrap, crate::admin::whoami, crate::admin::overview::overview, crate::admin::history,
        crate::admin::slow, crate::admin::keys::list, crate::admin::keys::rotate, crate::admin::keys::retire,
        crate::admin::keys::rotate_api_keys,
        crate::rest::admin::get_telemetry, crate::rest::admin::put_telemetry,
        crate::gotrue::signup, crate::gotrue::token, crate::gotrue::get_user,
        crate::gotrue::put_user, crate::gotrue::logout, crate::gotrue::recover,
        crate::gotrue::settings, crate::gotrue::jwks, crate::gotrue::admin_list,
        crate::gotrue::admin_create, crate::gotrue::admin_get, crate::gotrue::admin_update,
        crate::gotrue::admin_delete, crate::gotrue::admin_sessions, crate::gotrue::admin_end_sessions,
        crate::healthz, crate::metrics, crate::openapi,
    ),
    components(schemas(crate::rest::error::ErrorBody, crate::gotrue::AuthErrorBody)),
    modifiers(&Security),
    tags(
        (name = "rest", description = "Tables and views as resources, PostgREST's URL grammar"),
        (name = "sql", description = "SQL over HTTP"),
        (name = "migrations", description = "Schema migrations"),
        (name = "policies", description = "Row-level security policies (admin scope)"),
        (name = "audit", description = "The signed audit log (admin scope)"),
        (name = "auth", description = "Users and sessions (GoTrue-compatible, for @supabase/auth-js); errors are {code, error_code, msg}"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme("apikey", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("apikey"))));
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// This crate's routes with `extra` (other doors' documents) merged in.
pub fn document(extra: Vec<utoipa::openapi::OpenApi>) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for e in extra {
        doc.merge(e);
    }
    doc
}

/// The document as pretty JSON.
pub fn json(doc: &utoipa::openapi::OpenApi) -> String {
    doc.to_pretty_json().expect("the OpenAPI document serialises")
}

/// `docs/api.md`: an overview of the endpoints, then the document itself.
pub fn markdown(doc: &utoipa::openapi::OpenApi) -> String {
    let mut s = String::from(
        "# bkg-db HTTP API\n\n\
         Generated from the server's handlers (`bkg-db openapi` prints the same document, and the\n\
         server serves it at `/openapi.json`). Do not edit by hand: run\n\
         `BKG_UPDATE_DOCS=1 cargo nextest run -p bkg-db openapi` after changing an endpoint.\n\n\
         | Method | Path | Summary |\n|---|---|---|\n",
    );
    for (path, item) in doc.paths.paths.iter() {
        let ops = [
            ("GET", &item.get),
            ("HEAD", &item.head),
            ("POST", &item.post),
            ("PATCH", &item.patch),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ];
        for (m, op) in ops {
            if let Some(op) = op {
                let summary = op.summary.clone().or_else(|| op.description.clone()).unwrap_or_default();
                s.push_str(&format!("| {m} | `{path}` | {} |\n", summary.replace('|', "\\|").replace('\n', " ")));
            }
        }
    }
    s.push_str("\n## OpenAPI document\n\n```json\n");
    s.push_str(&json(doc));
    s.push_str("\n```\n");
    s
}

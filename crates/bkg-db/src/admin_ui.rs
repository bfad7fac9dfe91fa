//! The admin dashboard at `/admin/`: the static export of `web/admin` embedded at build time
//! (see `build.rs`), served same-origin with a strict Content-Security-Policy. A binary built
//! without the export answers `/admin/` with a short page that says how to build it.
//!
//! The dashboard's pages end with a slash (`/admin/users/`); the admin API's endpoints under
//! `/admin/` (`/admin/overview`, `/admin/telemetry`) do not, and win over the pages.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/admin_ui.rs"));
}

/// The export's script hashes, if it lists them (`csp.json`: every `'sha256-…'` string in it):
/// Next.js puts its page data into inline scripts, which the policy must name.
fn script_hashes() -> Vec<String> {
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if s.starts_with("'sha256-") && s.ends_with('\'') => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            serde_json::Value::Object(m) => m.values().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(v) = file("csp.json").and_then(|b| serde_json::from_slice(b).ok()) {
        collect(&v, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        let mut script = String::from("'self'");
        for h in script_hashes() {
            script.push(' ');
            script.push_str(&h);
        }
        format!(
            "default-src 'self'; script-src {script}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
             frame-ancestors 'none'"
        )
    })
}

fn file(path: &str) -> Option<&'static [u8]> {
    embedded::FILES.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

/// Whether this binary carries the dashboard.
pub fn embedded() -> bool {
    file("index.html").is_some()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        _ => "application/octet-stream",
    }
}

fn respond(status: StatusCode, path: &str, body: &'static [u8]) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp()));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Hashed build assets never change; pages do with every build.
    let cache = if path.starts_with("_next/static/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>bkg-db admin</title></head>\
<body><h1>The admin dashboard is not in this build</h1>\
<p>This binary was built without the dashboard's files. Build them and the binary again:</p>\
<pre>make web      # npm ci and next build in web/admin (needs Node.js 20)\ncargo build -p bkg-db</pre>\
<p>The HTTP API (<a href=\"/openapi.json\">/openapi.json</a>) works without it.</p></body></html>";

async fn page(path: Option<Path<String>>) -> Response {
    let path = path.map(|Path(p)| p).unwrap_or_default();
    if !embedded() {
        let mut r = (StatusCode::OK, NOT_BUILT).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp()));
        return r;
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed == "csp.json" || path.split('/').any(|seg| seg == "..") {
        return not_found();
    }
    if let Some(b) = file(trimmed).filter(|_| !trimmed.is_empty()) {
        return respond(StatusCode::OK, trimmed, b);
    }
    let index = if trimmed.is_empty() { "index.html".to_string() } else { format!("{trimmed}/index.html") };
    if let Some(b) = file(&index) {
        if !path.is_empty() && !path.ends_with('/') {
            // The page's own URL ends with a slash, as its links do.
            return Redirect::permanent(&format!("/admin/{trimmed}/")).into_response();
        }
        return respond(StatusCode::OK, &index, b);
    }
    not_found()
}

fn not_found() -> Response {
    match file("404.html") {
        Some(b) => respond(StatusCode::NOT_FOUND, "404.html", b),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `/admin` and the dashboard's files under `/admin/`.
pub fn router() -> Router {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(|| page(None)))
        .route("/admin/{*path}", get(|p: Path<String>| page(Some(p))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_strict() {
        let c = csp();
        assert!(c.contains("default-src 'self'") && c.contains("frame-ancestors 'none'"));
        assert!(!c.contains("script-src 'self' 'unsafe-inline'"), "{c}");
    }

    #[tokio::test]
    async fn paths_outside_the_export_are_not_served() {
        let r = page(Some(Path("../Cargo.toml".into()))).await;
        assert!(r.status() == StatusCode::NOT_FOUND || !embedded());
        for p in ["csp.json", "csp.json/", "csp.json//"] {
            let r = page(Some(Path(p.into()))).await;
            assert!(r.status() == StatusCode::NOT_FOUND || !embedded(), "{p}");
        }
    }
}

//! `COPY (query) TO '<url>'` / `COPY table TO '<url>'`: query results written as Parquet (ZSTD)
//! or CSV to a local file under the export directory or to an S3 object.
//!
//! The query runs on the session's one plan path (privileges and row-level security apply) and
//! reads one snapshot. Rows stream from the plan into the writer; the object appears only once
//! the writer finished (local files are written aside and renamed, S3 uploads complete at the
//! end), so a failed export leaves nothing behind. Who may export: superusers, the service
//! role and tokens with the `admin` scope. Where: paths inside the export directory, and URLs
//! starting with one of the configured prefixes.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use tokio::io::AsyncWriteExt;

use super::copy::CopyOptions;
use super::session::Session;
use crate::SqlState;
use crate::error::{SqlError, SqlResult, codes};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// Where exports may go.
#[derive(Debug, Clone, Default)]
pub struct ExportConfig {
    /// Local exports live under this directory (`file://` URLs and plain paths).
    pub dir: Option<PathBuf>,
    /// Remote URL prefixes exports may write to (`s3://bucket/prefix/`).
    pub allowed_prefixes: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum ExportFormat {
    Parquet,
    Csv(CopyOptions),
}

impl ExportFormat {
    pub fn name(&self) -> &'static str {
        match self {
            ExportFormat::Parquet => "parquet",
            ExportFormat::Csv(_) => "csv",
        }
    }
}

/// A resolved export target: the store and the object path in it.
pub struct Target {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
}

fn refused(url: &str) -> SqlError {
    SqlError::new(codes::INSUFFICIENT_PRIVILEGE, format!("export to \"{url}\" is not allowed"))
        .with_hint("Exports go to paths inside the export directory (BKG_DB_EXPORT_DIR) or to URLs under BKG_DB_EXPORT_ALLOWED_URLS.")
}

/// The lexically normal relative form of `p` (no `.`, `..`, root or prefix).
fn clean_relative(p: &Path, url: &str) -> SqlResult<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return Err(refused(url)),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(SqlError::new(codes::INVALID_PARAMETER_VALUE, format!("\"{url}\" names no file")));
    }
    Ok(out)
}

/// Resolves `url` against the configuration; refuses what lies outside it.
pub fn resolve(config: &ExportConfig, data_dir: &Path, url: &str) -> SqlResult<Target> {
    if let Some(rest) = url.strip_prefix("s3://") {
        if !config.allowed_prefixes.iter().any(|p| !p.is_empty() && url.starts_with(p.as_str())) {
            return Err(refused(url));
        }
        let (bucket, key) = rest.split_once('/').ok_or_else(|| {
            SqlError::new(codes::INVALID_PARAMETER_VALUE, format!("\"{url}\" names no object (s3://bucket/key)"))
        })?;
        let key = clean_relative(Path::new(key), url)?;
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            b = b.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
        }
        let store = b.build().map_err(|e| SqlError::new(SqlState::IoError, format!("S3 settings: {e}")))?;
        let path = ObjectPath::parse(key.to_string_lossy())
            .map_err(|e| SqlError::new(codes::INVALID_PARAMETER_VALUE, e.to_string()))?;
        return Ok(Target { store: Arc::new(store), path });
    }
    let local = match url.strip_prefix("file://") {
        Some(p) => p,
        None if url.contains("://") => {
            return Err(SqlError::new(
                codes::FEATURE_NOT_SUPPORTED,
                format!("export URL scheme of \"{url}\" is not supported (file:// and s3://)"),
            ));
        }
        None => url,
    };
    let root = config.dir.clone().unwrap_or_else(|| data_dir.join("exports"));
    std::fs::create_dir_all(&root).map_err(|e| {
        SqlError::new(SqlState::IoError, format!("cannot create the export directory {}: {e}", root.display()))
    })?;
    let root = root.canonicalize().map_err(|e| SqlError::new(SqlState::IoError, e.to_string()))?;
    // An absolute path must lie inside the export directory; a relative one is taken from it.
    let p = Path::new(local);
    let relative = if p.is_absolute() {
        let inside = p.strip_prefix(&root).map_err(|_| refused(url))?;
        clean_relative(inside, url)?
    } else {
        clean_relative(p, url)?
    };
    // No symbolic link on the way may lead out of it.
    if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(root.join(parent)).map_err(|e| SqlError::new(SqlState::IoError, e.to_string()))?;
        let real = root.join(parent).canonicalize().map_err(|e| SqlError::new(SqlState::IoError, e.to_string()))?;
        if !real.starts_with(&root) {
            return Err(refused(url));
        }
    }
    if root.join(&relative).symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(refused(url));
    }
    let store = object_store::local::LocalFileSystem::new_with_prefix(&root)
        .map_err(|e| SqlError::new(SqlState::IoError, e.to_string()))?;
    let path = ObjectPath::from_filesystem_path(&relative)
        .or_else(|_| ObjectPath::parse(relative.to_string_lossy()))
        .map_err(|e| SqlError::new(codes::INVALID_PARAMETER_VALUE, e.to_string()))?;
    Ok(Target { store: Arc::new(store), path })
}

/// The format name an export's options or file name ask for (Parquet unless told otherwise).
pub fn format_name(url: &str, format: Option<&str>) -> String {
    match format {
        Some(f) => f.to_lowercase(),
        None if url.to_lowercase().ends_with(".csv") => "csv".into(),
        None => "parquet".into(),
    }
}

/// The export format named `name` (see [`format_name`]); `csv` holds the CSV options (COPY's,
/// with CSV's defaults).
pub fn format_of(name: &str, csv: CopyOptions) -> SqlResult<ExportFormat> {
    match name {
        "parquet" => Ok(ExportFormat::Parquet),
        "csv" => Ok(ExportFormat::Csv(csv)),
        other => Err(SqlError::new(
            codes::INVALID_PARAMETER_VALUE,
            format!("export format \"{other}\" not recognized (parquet, csv)"),
        )),
    }
}

impl Session {
    /// Superusers, the service role and admin-scoped tokens may export (the callers
    /// [`Session::is_operator`] names).
    pub fn may_export(&self) -> bool {
        self.is_operator()
    }

    /// Superusers, the service role and admin-scoped tokens: who may see and do what operates
    /// the whole server (exports, the details of `/healthz`).
    pub fn is_operator(&self) -> bool {
        self.is_superuser() || self.scopes().is_some_and(|s| s.admin) || self.may_impersonate()
    }

    /// Runs `query` and writes its rows to `url`; the number of rows written.
    pub async fn export(
        &mut self,
        query: datafusion::sql::sqlparser::ast::Statement,
        url: &str,
        format: ExportFormat,
    ) -> SqlResult<u64> {
        if !self.may_export() {
            return Err(SqlError::new(codes::INSUFFICIENT_PRIVILEGE, "permission denied to export query results")
                .with_hint("Exports need a superuser, the service role or a token with the admin scope."));
        }
        let target = resolve(&self.engine.config.export, self.engine.db.dir(), url)?;
        let format_name = format.name();
        let out = Box::pin(self.execute_streaming(query)).await?;
        let schema = out.schema.clone();
        let mut stream = out.stream;
        let mut rows = 0u64;
        match format {
            ExportFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .build();
                let writer = object_store::buffered::BufWriter::new(target.store.clone(), target.path.clone());
                let mut w = AsyncArrowWriter::try_new(writer, schema, Some(props))?;
                while let Some(b) = stream.next().await {
                    let b = b?;
                    rows += b.num_rows() as u64;
                    w.write(&b).await?;
                }
                w.close().await?;
            }
            ExportFormat::Csv(o) => {
                let mut w = object_store::buffered::BufWriter::new(target.store.clone(), target.path.clone());
                let mut first = true;
                let mut failed = None;
                while let Some(b) = stream.next().await {
                    let b = match b {
                        Ok(b) => b,
                        Err(e) => {
                            failed = Some(SqlError::from(e));
                            break;
                        }
                    };
                    rows += b.num_rows() as u64;
                    let o = CopyOptions { header: o.header && first, ..o.clone() };
                    first = false;
                    let lines = super::copy::encode_rows(&b.schema(), &[b], &o)?;
                    if let Err(e) = w.write_all(lines.concat().as_bytes()).await {
                        failed = Some(SqlError::new(SqlState::IoError, format!("export write: {e}")));
                        break;
                    }
                }
                if let Some(e) = failed {
                    let _ = w.abort().await;
                    return Err(e);
                }
                w.shutdown().await.map_err(|e| SqlError::new(SqlState::IoError, format!("export write: {e}")))?;
            }
        }
        let event = bkg_audit::Event::new(self.actor(), "data.export", url, bkg_audit::Outcome::Success)
            .with_detail(serde_json::json!({ "rows": rows, "format": format_name }));
        self.engine.audit_now(event).await;
        Ok(rows)
    }
}

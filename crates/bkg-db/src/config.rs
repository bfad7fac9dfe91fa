//! Command line and environment. Flags and `BKG_DB_*` variables are read here and nowhere else;
//! `docs/env.md` lists every one.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "bkg-db", version, about = "bkg-db: SQL over the PostgreSQL wire and HTTP on an MVCC columnar engine")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server (the default).
    Serve(ServeArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API.
    Openapi,
    /// Schema migrations: `migrate apply` / `migrate status`.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Signing and API keys in `<data-dir>/auth/keys.json`: `keys list|rotate|retire|import|rotate-api-keys`.
    /// A running server picks changes up within seconds.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The signed audit log in `<data-dir>/audit`: `audit verify|seal|rotate-key|public-key`.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the hash chain and every segment's signature offline; exits 1 naming the first
    /// bad line.
    Verify(AuditArgs),
    /// Close and sign the open segment (the server must be stopped; a running server seals
    /// through `POST /audit/seal`).
    Seal(AuditArgs),
    /// Seal the open segment and sign from now on with a new key (the server must be stopped;
    /// a running server rotates through `POST /audit/rotate-key`).
    RotateKey(AuditArgs),
    /// Print the public key that signs new segments (PEM).
    PublicKey(AuditArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    #[arg(long = "data-dir", env = "BKG_DB_DSN", default_value = "./.bkg-data")]
    pub data_dir: String,
    /// Verify against these public keys (PEM files) instead of those in the directory: a copy
    /// kept elsewhere shows a log rebuilt with another key.
    #[arg(long = "key")]
    pub keys: Vec<PathBuf>,
}

impl AuditArgs {
    pub fn audit_dir(&self) -> PathBuf {
        PathBuf::from(self.data_dir.strip_prefix("file://").unwrap_or(&self.data_dir)).join("audit")
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Show the algorithm, the signing keys (which one signs, which are retired) and the API keys.
    List(KeysArgs),
    /// ES256: add a signing key; it signs from now on, older keys verify until retired.
    Rotate(KeysArgs),
    /// ES256/RS256: retire a signing key (`--kid`); tokens it signed stop verifying.
    Retire(KeysArgs),
    /// Issue new anon and service keys signed by the current key.
    RotateApiKeys(KeysArgs),
    /// RS256: add an RSA key from a PKCS#8 PEM file (`--pem`); it signs from now on.
    Import(KeysArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[arg(long = "data-dir", env = "BKG_DB_DSN", default_value = "./.bkg-data")]
    pub data_dir: String,
    /// The key to retire.
    #[arg(long)]
    pub kid: Option<String>,
    /// The RSA key to import (PKCS#8 PEM).
    #[arg(long)]
    pub pem: Option<PathBuf>,
    /// The server's JWT settings (the same variables).
    #[command(flatten)]
    pub jwt: JwtArgs,
}

/// How tokens are signed and checked: shared by `serve` and `keys`.
#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// HS256 secret for API tokens (at least 32 characters). Without it a random secret is
    /// generated on first start and kept in `<data-dir>/auth/keys.json`.
    #[arg(long, env = "BKG_DB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Required `aud` claim of API tokens (unset: a token's `aud`, if it has one, must name
    /// `authenticated`; tokens without `aud`, such as the API keys, pass).
    #[arg(long, env = "BKG_DB_JWT_AUD")]
    pub jwt_aud: Option<String>,
    /// Required `iss` claim of API tokens (unset: not checked).
    #[arg(long, env = "BKG_DB_JWT_ISS")]
    pub jwt_iss: Option<String>,
    /// The one JWT algorithm accepted: `HS256` (the shared secret), `ES256` (P-256 keys
    /// generated into `<data-dir>/auth/keys.json`, rotated with `bkg-db keys rotate`) or
    /// `RS256` (RSA keys from BKG_DB_JWT_RSA_KEY_FILE or `bkg-db keys import`). ES256 and RS256
    /// public keys are published at /auth/v1/.well-known/jwks.json.
    #[arg(long, env = "BKG_DB_JWT_ALG", default_value = "HS256", value_parser = ["HS256", "ES256", "RS256"])]
    pub jwt_alg: String,
    /// RS256: PKCS#8 PEM file of the RSA private key to sign with (added to the key ring).
    #[arg(long, env = "BKG_DB_JWT_RSA_KEY_FILE")]
    pub jwt_rsa_key_file: Option<PathBuf>,
}

impl JwtArgs {
    pub fn key_settings(&self) -> bkg_auth::KeySettings {
        bkg_auth::KeySettings {
            secret: self.jwt_secret.clone(),
            alg: bkg_auth::Alg::parse(&self.jwt_alg).unwrap_or_default(),
            audience: self.jwt_aud.clone(),
            issuer: self.jwt_iss.clone(),
            rsa_key_file: self.jwt_rsa_key_file.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply the pending migrations (the built-in ones, then those of --dir), each in its own
    /// transaction.
    Apply(MigrateArgs),
    /// List the migrations: applied, pending, edited since applied, or missing.
    Status(MigrateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Directory of `<version>_<name>.sql` files.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Work on this data directory directly (the server must not be running on it).
    #[arg(long = "data-dir", env = "BKG_DB_DSN", default_value = "./.bkg-data")]
    pub data_dir: String,
    /// Send the migrations to a running server instead (`http://host:port`).
    #[arg(long)]
    pub url: Option<String>,
    /// service_role key for --url (see `<data-dir>/auth/keys.json`).
    #[arg(long, env = "BKG_DB_SERVICE_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Data directory: a path or a file:// URL.
    #[arg(long = "data-dir", env = "BKG_DB_DSN", default_value = "./.bkg-data")]
    pub data_dir: String,
    /// Address of the PostgreSQL wire listener.
    #[arg(long, env = "BKG_DB_PG_LISTEN", default_value = "127.0.0.1:5433")]
    pub pg_listen: SocketAddr,
    /// Address of the HTTP listener (/healthz, /metrics).
    #[arg(long, env = "BKG_DB_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// Address of the Arrow Flight SQL listener (gRPC).
    #[arg(long, env = "BKG_DB_FLIGHT_LISTEN", default_value = "127.0.0.1:50051")]
    pub flight_listen: SocketAddr,
    /// Directory local exports (`COPY … TO 'file://…'`, `/export`) are written under; default
    /// `<data-dir>/exports`.
    #[arg(long, env = "BKG_DB_EXPORT_DIR")]
    pub export_dir: Option<std::path::PathBuf>,
    /// Comma-separated URL prefixes exports may write to, e.g. `s3://bucket/exports/`.
    #[arg(long, env = "BKG_DB_EXPORT_ALLOWED_URLS", default_value = "")]
    pub export_allowed_urls: String,
    /// Largest Flight message (one DoPut or DoGet batch), MiB.
    #[arg(long, env = "BKG_DB_FLIGHT_MAX_MESSAGE_MB", default_value_t = 64)]
    pub flight_max_message_mb: usize,
    /// statement_timeout of Flight calls, seconds (0 = none).
    #[arg(long, env = "BKG_DB_FLIGHT_STATEMENT_TIMEOUT_S", default_value_t = 0)]
    pub flight_statement_timeout_s: u64,
    /// How long a bearer token from the Flight handshake stays valid, seconds.
    #[arg(long, env = "BKG_DB_FLIGHT_TOKEN_TTL_S", default_value_t = 43_200)]
    pub flight_token_ttl_s: u64,
    /// Realtime: WebSocket connections open at once (one more gets 503).
    #[arg(long, env = "BKG_DB_REALTIME_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub realtime_max_connections: usize,
    /// Realtime: channels one connection may join.
    #[arg(long, env = "BKG_DB_REALTIME_MAX_CHANNELS", default_value_t = 100)]
    pub realtime_max_channels: usize,
    /// Realtime: joins one connection may send per second.
    #[arg(long, env = "BKG_DB_REALTIME_JOINS_PER_S", default_value_t = 50)]
    pub realtime_joins_per_s: u32,
    /// Realtime: broadcast and presence messages one connection may send per second.
    #[arg(long, env = "BKG_DB_REALTIME_EVENTS_PER_S", default_value_t = 100)]
    pub realtime_events_per_s: u32,
    /// Realtime: messages queued for one connection before it is disconnected as too slow.
    #[arg(long, env = "BKG_DB_REALTIME_QUEUE", default_value_t = 1024)]
    pub realtime_queue: usize,
    /// Realtime: largest broadcast or presence payload, KiB.
    #[arg(long, env = "BKG_DB_REALTIME_PAYLOAD_MAX_KB", default_value_t = 256)]
    pub realtime_payload_max_kb: usize,
    /// Realtime: seconds without any message (heartbeats included) before a connection closes.
    #[arg(long, env = "BKG_DB_REALTIME_IDLE_TIMEOUT_S", default_value_t = 60)]
    pub realtime_idle_timeout_s: u64,
    /// Storage: where object bytes live, `local` (a directory) or `s3` (a bucket).
    #[arg(long, env = "BKG_DB_STORAGE_BACKEND", default_value = "local", value_parser = ["local", "s3"])]
    pub storage_backend: String,
    /// Storage: the directory of the local backend; default `<data-dir>/storage`.
    #[arg(long, env = "BKG_DB_STORAGE_DIR")]
    pub storage_dir: Option<PathBuf>,
    /// Storage: the S3 bucket of the s3 backend (credentials and region from `AWS_*`).
    #[arg(long, env = "BKG_DB_STORAGE_S3_BUCKET")]
    pub storage_s3_bucket: Option<String>,
    /// Storage: the S3 endpoint (an S3-compatible server); default `AWS_ENDPOINT_URL` or AWS.
    #[arg(long, env = "BKG_DB_STORAGE_S3_ENDPOINT")]
    pub storage_s3_endpoint: Option<String>,
    /// Storage: the S3 region; default `AWS_REGION`.
    #[arg(long, env = "BKG_DB_STORAGE_S3_REGION")]
    pub storage_s3_region: Option<String>,
    /// Storage: a folder of the S3 bucket to keep objects under.
    #[arg(long, env = "BKG_DB_STORAGE_S3_PREFIX", default_value = "")]
    pub storage_s3_prefix: String,
    /// Storage: largest object, MiB (a bucket's file_size_limit may lower it).
    #[arg(long, env = "BKG_DB_STORAGE_FILE_SIZE_MAX_MB", default_value_t = 50)]
    pub storage_file_size_max_mb: u64,
    /// Storage: longest lifetime of a signed download URL, seconds.
    #[arg(long, env = "BKG_DB_STORAGE_SIGNED_URL_MAX_S", default_value_t = 604_800)]
    pub storage_signed_url_max_s: u64,
    /// Storage: lifetime of a signed upload URL, seconds.
    #[arg(long, env = "BKG_DB_STORAGE_UPLOAD_URL_TTL_S", default_value_t = 7200)]
    pub storage_upload_url_ttl_s: u64,
    /// Storage: stored bytes without a metadata row are deleted once this old, seconds.
    #[arg(long, env = "BKG_DB_STORAGE_GC_GRACE_S", default_value_t = 900)]
    pub storage_gc_grace_s: u64,
    /// Storage: how often bytes without a metadata row are looked for, seconds (0: at start only).
    #[arg(long, env = "BKG_DB_STORAGE_GC_INTERVAL_S", default_value_t = 3600)]
    pub storage_gc_interval_s: u64,
    /// Audit log: a segment is closed and signed once it holds this many MiB.
    #[arg(long, env = "BKG_DB_AUDIT_SEGMENT_MB", default_value_t = 16)]
    pub audit_segment_mb: u64,
    /// Password of the `postgres` superuser. Required unless every listener is on loopback.
    #[arg(long, env = "BKG_DB_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// PEM certificate chain for TLS on the PostgreSQL wire listener (with --pg-tls-key).
    #[arg(long, env = "BKG_DB_PG_TLS_CERT")]
    pub pg_tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the PostgreSQL wire listener (with --pg-tls-cert).
    #[arg(long, env = "BKG_DB_PG_TLS_KEY")]
    pub pg_tls_key: Option<PathBuf>,
    /// Refuse PostgreSQL wire connections that do not use TLS.
    #[arg(long, env = "BKG_DB_PG_TLS_REQUIRED", default_value_t = false)]
    pub pg_tls_required: bool,
    /// Ask TLS clients for their password in cleartext instead of SCRAM, so a token (JWT) can be
    /// given as the password. Needs TLS; plain connections keep using SCRAM-SHA-256.
    #[arg(long, env = "BKG_DB_PG_CLEARTEXT_OVER_TLS", default_value_t = false)]
    pub pg_cleartext_over_tls: bool,
    /// Most PostgreSQL wire connections at once; more are refused with SQLSTATE 53300.
    #[arg(long, env = "BKG_DB_MAX_CONNECTIONS", default_value_t = 100)]
    pub max_connections: usize,
    /// Memory all queries together may use for joins, sorts and aggregates, in MiB.
    #[arg(long, env = "BKG_DB_QUERY_MEMORY_MB", default_value_t = 4096)]
    pub query_memory_mb: usize,
    /// Take a column snapshot once this many MiB of WAL were written since the last one.
    #[arg(long, env = "BKG_DB_CHECKPOINT_WAL_MB", default_value_t = 256)]
    pub checkpoint_wal_mb: u64,
    /// Take a column snapshot at least this often (seconds) when anything was written.
    #[arg(long, env = "BKG_DB_CHECKPOINT_INTERVAL_S", default_value_t = 300)]
    pub checkpoint_interval_s: u64,
    /// Log a warning when a transaction has held its snapshot longer than this (seconds; 0 = never):
    /// while it does, old row versions cannot be collected.
    #[arg(long, env = "BKG_DB_SNAPSHOT_AGE_WARN_S", default_value_t = 600)]
    pub snapshot_age_warn_s: u64,
    /// Keep statements of any front door that took at least this long (milliseconds; 0 = none)
    /// in the recent slow statements of the admin API and dashboard (the newest 200).
    #[arg(long, env = "BKG_DB_SLOW_STATEMENT_MS", default_value_t = 200)]
    pub slow_statement_ms: u64,
    /// Seconds to let open connections finish after SIGTERM/SIGINT.
    #[arg(long, env = "BKG_DB_SHUTDOWN_GRACE_S", default_value_t = 10)]
    pub shutdown_grace_s: u64,
    /// Close connections idle inside a transaction block this long (seconds, 0 = never); the
    /// session default of `idle_in_transaction_session_timeout`. An open transaction holds its
    /// snapshot, which keeps old row versions in memory.
    #[arg(long, env = "BKG_DB_IDLE_IN_TRANSACTION_TIMEOUT_S", default_value_t = 600)]
    pub idle_in_transaction_timeout_s: u64,
    /// Close connections idle outside a transaction this long (seconds, 0 = never); the session
    /// default of `idle_session_timeout`.
    #[arg(long, env = "BKG_DB_IDLE_SESSION_TIMEOUT_S", default_value_t = 0)]
    pub idle_session_timeout_s: u64,
    /// JWT algorithm and keys.
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Schemas the REST API exposes, comma-separated; the first is the default.
    #[arg(long, env = "BKG_DB_REST_SCHEMAS", default_value = "public")]
    pub rest_schemas: String,
    /// Lifetime of the access tokens `/auth/v1` issues, seconds.
    #[arg(long, env = "BKG_DB_AUTH_JWT_EXPIRY_S", default_value_t = 3600)]
    pub auth_jwt_expiry_s: u64,
    /// Refuse `POST /auth/v1/signup` (users are then created by the service role).
    #[arg(long, env = "BKG_DB_AUTH_DISABLE_SIGNUP", default_value_t = false)]
    pub auth_disable_signup: bool,
    /// Sign-ups are confirmed at once and get a session (`true`, the default). With `false` a
    /// sign-up answers with the user only (the same whether or not the email is taken), and the
    /// user signs in after the service role confirmed it (`email_confirm`).
    #[arg(long, env = "BKG_DB_AUTH_AUTOCONFIRM", default_value_t = true, action = clap::ArgAction::Set)]
    pub auth_autoconfirm: bool,
    /// Requests per minute per client address to `/auth/v1` signup, token and recover (0 = no limit).
    #[arg(long, env = "BKG_DB_AUTH_RATE_PER_MIN", default_value_t = 30)]
    pub auth_rate_per_min: u32,
    /// Tables created in the exposed schemas start with row-level security on (`on`, the
    /// default) or off (`off`); with it on and no policy, API roles see no rows.
    #[arg(long, env = "BKG_DB_RLS_DEFAULT", default_value = "on", value_parser = ["on", "off"])]
    pub rls_default: String,
    /// Most rows one REST response returns (0 = no limit).
    #[arg(long, env = "BKG_DB_REST_MAX_ROWS", default_value_t = 1000)]
    pub rest_max_rows: usize,
    /// statement_timeout of REST requests, seconds (0 = none).
    #[arg(long, env = "BKG_DB_REST_STATEMENT_TIMEOUT_S", default_value_t = 30)]
    pub rest_statement_timeout_s: u64,
    /// Largest HTTP request body, MiB (413 beyond it).
    #[arg(long, env = "BKG_DB_REST_BODY_MAX_MB", default_value_t = 10)]
    pub rest_body_max_mb: usize,
    /// HTTP API requests per second per client IP address (0 = unlimited); 429 beyond it.
    #[arg(long, env = "BKG_DB_REST_RATE_PER_S", default_value_t = 1000)]
    pub rest_rate_per_s: u32,
    /// Requests a client may burst above the rate.
    #[arg(long, env = "BKG_DB_REST_RATE_BURST", default_value_t = 2000)]
    pub rest_rate_burst: u32,
    /// Directory of migration files that `POST /migrate/apply` applies (besides those in its body).
    #[arg(long, env = "BKG_DB_MIGRATIONS_DIR")]
    pub migrations_dir: Option<PathBuf>,
    /// Most rows one `POST /query` answer may hold (0 = no limit); more is error 54000.
    #[arg(long, env = "BKG_DB_QUERY_MAX_ROWS", default_value_t = 100_000)]
    pub query_max_rows: usize,
    /// Log format: `text` or `json`.
    #[arg(long, env = "BKG_DB_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl ServeArgs {
    pub fn export_config(&self) -> bkg_sql::export::ExportConfig {
        bkg_sql::export::ExportConfig {
            dir: self.export_dir.clone(),
            allowed_prefixes: self
                .export_allowed_urls
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    pub fn flight_config(&self) -> bkg_flight::FlightConfig {
        bkg_flight::FlightConfig {
            max_message_bytes: self.flight_max_message_mb.max(1) << 20,
            statement_timeout_ms: self.flight_statement_timeout_s * 1000,
            token_ttl: std::time::Duration::from_secs(self.flight_token_ttl_s.max(1)),
            ..Default::default()
        }
    }

    pub fn realtime_config(&self) -> bkg_realtime::RealtimeConfig {
        bkg_realtime::RealtimeConfig {
            max_connections: self.realtime_max_connections,
            channels_per_connection: self.realtime_max_channels,
            joins_per_second: self.realtime_joins_per_s,
            events_per_second: self.realtime_events_per_s,
            queue_frames: self.realtime_queue,
            payload_bytes_max: self.realtime_payload_max_kb << 10,
            idle_timeout_s: self.realtime_idle_timeout_s,
        }
        .checked()
    }

    pub fn storage_config(&self) -> Result<bkg_storage::StorageConfig, String> {
        let backend = match self.storage_backend.as_str() {
            "s3" => bkg_storage::BackendConfig::S3 {
                bucket: self
                    .storage_s3_bucket
                    .clone()
                    .ok_or("BKG_DB_STORAGE_BACKEND=s3 needs BKG_DB_STORAGE_S3_BUCKET")?,
                endpoint: self.storage_s3_endpoint.clone(),
                region: self.storage_s3_region.clone(),
                prefix: self.storage_s3_prefix.clone(),
            },
            _ => bkg_storage::BackendConfig::Local(
                self.storage_dir.clone().unwrap_or_else(|| self.data_path().join("storage")),
            ),
        };
        Ok(bkg_storage::StorageConfig {
            backend,
            file_size_max: self.storage_file_size_max_mb << 20,
            signed_url_max_s: self.storage_signed_url_max_s.max(1),
            upload_url_ttl_s: self.storage_upload_url_ttl_s.max(1),
            gc_grace_s: self.storage_gc_grace_s,
            gc_interval_s: self.storage_gc_interval_s,
        })
    }

    pub fn rest_config(&self) -> bkg_http::rest::RestConfig {
        bkg_http::rest::RestConfig {
            schemas: self.rest_schemas.split(',').map(|x| x.trim().to_string()).collect(),
            max_rows: (self.rest_max_rows > 0).then_some(self.rest_max_rows),
            statement_timeout_ms: self.rest_statement_timeout_s * 1000,
            body_bytes_max: self.rest_body_max_mb << 20,
            rate_per_s: self.rest_rate_per_s,
            rate_burst: self.rest_rate_burst,
            query_rows_max: (self.query_max_rows > 0).then_some(self.query_max_rows),
            migrations_dir: self.migrations_dir.clone(),
        }
    }

    pub fn key_settings(&self) -> bkg_auth::KeySettings {
        self.jwt.key_settings()
    }

    pub fn gotrue_config(&self) -> bkg_http::gotrue::GoTrueConfig {
        bkg_http::gotrue::GoTrueConfig {
            jwt_expiry_s: self.auth_jwt_expiry_s,
            disable_signup: self.auth_disable_signup,
            rate_per_min: self.auth_rate_per_min,
            autoconfirm: self.auth_autoconfirm,
        }
    }

    pub fn data_path(&self) -> PathBuf {
        PathBuf::from(self.data_dir.strip_prefix("file://").unwrap_or(&self.data_dir))
    }

    /// Checks the settings; returns the superuser password to use.
    pub fn validate(&self) -> Result<String, String> {
        if self.data_dir.contains("://") && !self.data_dir.starts_with("file://") {
            return Err(format!("unsupported data directory URL {} (use a path or file://)", self.data_dir));
        }
        if !["text", "json"].contains(&self.log_format.as_str()) {
            return Err(format!("BKG_DB_LOG_FORMAT must be text or json, not {}", self.log_format));
        }
        if self.pg_tls_cert.is_some() != self.pg_tls_key.is_some() {
            return Err("BKG_DB_PG_TLS_CERT and BKG_DB_PG_TLS_KEY must be set together".into());
        }
        if (self.pg_tls_required || self.pg_cleartext_over_tls) && self.pg_tls_cert.is_none() {
            return Err(
                "BKG_DB_PG_TLS_REQUIRED and BKG_DB_PG_CLEARTEXT_OVER_TLS need TLS (BKG_DB_PG_TLS_CERT and _KEY)".into(),
            );
        }
        if self.rest_schemas.split(',').map(str::trim).any(|x| x.is_empty()) {
            return Err(format!("BKG_DB_REST_SCHEMAS must list schema names, not \"{}\"", self.rest_schemas));
        }
        if self.jwt.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err("BKG_DB_JWT_SECRET must be at least 32 characters".into());
        }
        if self.max_connections == 0 {
            return Err("BKG_DB_MAX_CONNECTIONS must be at least 1".into());
        }
        let loopback = [self.pg_listen, self.http_listen, self.flight_listen].iter().all(|a| a.ip().is_loopback());
        match &self.password {
            Some(p) if !p.is_empty() => Ok(p.clone()),
            _ if loopback => Ok("postgres".to_string()),
            _ => Err("BKG_DB_PASSWORD must be set when any listener is not on loopback".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every variable the server reads is in docs/env.md and in .env.example.
    #[test]
    fn every_variable_is_documented() {
        let src = include_str!("config.rs");
        let env_md = include_str!("../../../docs/env.md");
        let example = include_str!("../../../.env.example");
        let names: Vec<&str> = src
            .split("env = \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|n| n.starts_with("BKG_"))
            .collect();
        assert!(names.len() > 30, "{names:?}");
        for name in names {
            assert!(env_md.contains(&format!("`{name}`")), "{name} is not in docs/env.md");
            assert!(example.contains(&format!("{name}=")), "{name} is not in .env.example");
        }
    }
}

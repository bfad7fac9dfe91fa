//! Kernel errors. One enum for the whole kernel; each variant carries the values involved and maps
//! to exactly one [`ErrorCode`], which the front doors translate once into SQLSTATE / HTTP / gRPC.

use std::path::PathBuf;

/// Stable error classes of the kernel. The SQL layer maps these to SQLSTATE codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    UniqueViolation,
    ForeignKeyViolation,
    NotNullViolation,
    SerializationFailure,
    UndefinedTable,
    UndefinedColumn,
    UndefinedSchema,
    UndefinedObject,
    DuplicateTable,
    DuplicateSchema,
    DuplicateColumn,
    DuplicateObject,
    DependentObjects,
    InvalidDefinition,
    InvalidGrant,
    LockNotAvailable,
    Deadlock,
    DiskFull,
    Io,
    Corruption,
    ProgramLimit,
    Internal,
}

impl ErrorCode {
    /// The PostgreSQL SQLSTATE for this class.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorCode::UniqueViolation => "23505",
            ErrorCode::ForeignKeyViolation => "23503",
            ErrorCode::NotNullViolation => "23502",
            ErrorCode::SerializationFailure => "40001",
            ErrorCode::UndefinedTable => "42P01",
            ErrorCode::UndefinedColumn => "42703",
            ErrorCode::UndefinedSchema => "3F000",
            ErrorCode::UndefinedObject => "42704",
            ErrorCode::DuplicateTable => "42P07",
            ErrorCode::DuplicateSchema => "42P06",
            ErrorCode::DuplicateColumn => "42701",
            ErrorCode::DuplicateObject => "42710",
            ErrorCode::DependentObjects => "2BP01",
            ErrorCode::InvalidDefinition => "42P16",
            ErrorCode::InvalidGrant => "0LP01",
            ErrorCode::LockNotAvailable => "55P03",
            ErrorCode::Deadlock => "40P01",
            ErrorCode::DiskFull => "53100",
            ErrorCode::Io => "58030",
            ErrorCode::Corruption => "XX001",
            ErrorCode::ProgramLimit => "54000",
            ErrorCode::Internal => "XX000",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation { constraint: String, detail: String },
    /// A row references a missing key, or a removed key is still referenced.
    #[error("{message}")]
    ForeignKeyViolation { message: String, detail: String },
    #[error("null value in column \"{column}\" of relation \"{table}\" violates not-null constraint")]
    NotNullViolation { table: String, column: String },
    #[error("could not serialize access due to concurrent update")]
    SerializationFailure { detail: String },
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    #[error("column \"{column}\" of relation \"{table}\" does not exist")]
    UndefinedColumn { table: String, column: String },
    #[error("schema \"{0}\" does not exist")]
    UndefinedSchema(String),
    #[error("{kind} \"{name}\" does not exist")]
    UndefinedObject { kind: &'static str, name: String },
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    #[error("schema \"{0}\" already exists")]
    DuplicateSchema(String),
    #[error("column \"{column}\" of relation \"{table}\" already exists")]
    DuplicateColumn { table: String, column: String },
    #[error("{kind} \"{name}\" already exists")]
    DuplicateObject { kind: &'static str, name: String },
    #[error("cannot drop {what} because other objects depend on it")]
    DependentObjects { what: String, detail: String },
    #[error("invalid definition: {0}")]
    InvalidDefinition(String),
    /// A role grant that would make a role a member of itself, or similar.
    #[error("{0}")]
    InvalidGrant(String),
    #[error("could not write to {path}: no space left on device")]
    DiskFull { path: PathBuf },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption { path: PathBuf, offset: u64, reason: String },
    #[error("{what} exceeds the limit of {limit}")]
    ProgramLimit { what: String, limit: u64 },
    /// Another transaction holds the row's write lock. The caller waits for it with
    /// [`Database::wait_for_row_lock`](crate::Database::wait_for_row_lock) and then retries
    /// the statement; nothing of the failed call was written.
    #[error("row {rowid} of table {table} is locked by transaction {holder}")]
    LockWait { table: u64, rowid: u64, holder: u64 },
    #[error("canceling statement due to lock timeout")]
    LockTimeout,
    #[error("deadlock detected")]
    Deadlock { detail: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::UniqueViolation { .. } => ErrorCode::UniqueViolation,
            Error::ForeignKeyViolation { .. } => ErrorCode::ForeignKeyViolation,
            Error::NotNullViolation { .. } => ErrorCode::NotNullViolation,
            Error::SerializationFailure { .. } => ErrorCode::SerializationFailure,
            Error::UndefinedTable(_) => ErrorCode::UndefinedTable,
            Error::UndefinedColumn { .. } => ErrorCode::UndefinedColumn,
            Error::UndefinedSchema(_) => ErrorCode::UndefinedSchema,
            Error::UndefinedObject { .. } => ErrorCode::UndefinedObject,
            Error::DuplicateTable(_) => ErrorCode::DuplicateTable,
            Error::DuplicateSchema(_) => ErrorCode::DuplicateSchema,
            Error::DuplicateColumn { .. } => ErrorCode::DuplicateColumn,
            Error::DuplicateObject { .. } => ErrorCode::DuplicateObject,
            Error::DependentObjects { .. } => ErrorCode::DependentObjects,
            Error::InvalidDefinition(_) => ErrorCode::InvalidDefinition,
            Error::InvalidGrant(_) => ErrorCode::InvalidGrant,
            Error::LockWait { .. } | Error::LockTimeout => ErrorCode::LockNotAvailable,
            Error::Deadlock { .. } => ErrorCode::Deadlock,
            Error::DiskFull { .. } => ErrorCode::DiskFull,
            Error::Io { .. } => ErrorCode::Io,
            Error::Corruption { .. } => ErrorCode::Corruption,
            Error::ProgramLimit { .. } => ErrorCode::ProgramLimit,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Optional detail line for clients (never internal state).
    pub fn detail(&self) -> Option<String> {
        match self {
            Error::UniqueViolation { detail, .. }
            | Error::ForeignKeyViolation { detail, .. }
            | Error::SerializationFailure { detail }
            | Error::Deadlock { detail }
            | Error::DependentObjects { detail, .. } => Some(detail.clone()),
            _ => None,
        }
    }

    /// Wraps an I/O error, recognising a full disk.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        let path = path.into();
        if source.raw_os_error() == Some(28) || source.kind() == std::io::ErrorKind::StorageFull {
            Error::DiskFull { path }
        } else {
            Error::Io { path, source }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

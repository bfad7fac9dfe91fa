//! One error type for every front door: a SQLSTATE, a message, and optional detail and hint.
//!
//! Kernel errors, DataFusion errors and parser errors are all mapped here, once. pgwire sends the
//! SQLSTATE as is; HTTP maps it to a status with `{code,message,details,hint}`.

use bkg_kernel::ErrorCode;

pub use crate::sqlstate::SqlState;
use datafusion::error::DataFusionError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub code: SqlState,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// Set when running the statement again may succeed (a row lock or a write conflict).
    pub retry: Option<Retry>,
}

/// Why a statement may be run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// (table, rowid, holder): wait for the holder, then run again.
    LockWait(u64, u64, u64),
    /// A row was changed by a transaction that committed after the statement's snapshot.
    Conflict,
}

pub type SqlResult<T> = std::result::Result<T, SqlError>;

/// The states the code names most, by their PostgreSQL condition names.
pub mod codes {
    use super::SqlState;

    pub const SYNTAX_ERROR: SqlState = SqlState::SyntaxError;
    pub const UNDEFINED_TABLE: SqlState = SqlState::UndefinedTable;
    pub const UNDEFINED_COLUMN: SqlState = SqlState::UndefinedColumn;
    pub const UNDEFINED_FUNCTION: SqlState = SqlState::UndefinedFunction;
    pub const DUPLICATE_TABLE: SqlState = SqlState::DuplicateTable;
    pub const WRONG_OBJECT_TYPE: SqlState = SqlState::WrongObjectType;
    pub const DATATYPE_MISMATCH: SqlState = SqlState::DatatypeMismatch;
    pub const INVALID_TEXT_REPRESENTATION: SqlState = SqlState::InvalidTextRepresentation;
    pub const INVALID_BINARY_REPRESENTATION: SqlState = SqlState::InvalidBinaryRepresentation;
    pub const CHARACTER_NOT_IN_REPERTOIRE: SqlState = SqlState::CharacterNotInRepertoire;
    pub const DATETIME_VALUE_OUT_OF_RANGE: SqlState = SqlState::DatetimeFieldOverflow;
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState::ProgramLimitExceeded;
    pub const NAME_TOO_LONG: SqlState = SqlState::NameTooLong;
    pub const DIVISION_BY_ZERO: SqlState = SqlState::DivisionByZero;
    pub const NUMERIC_VALUE_OUT_OF_RANGE: SqlState = SqlState::NumericValueOutOfRange;
    pub const STRING_DATA_RIGHT_TRUNCATION: SqlState = SqlState::StringDataRightTruncation;
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState::InvalidParameterValue;
    pub const IN_FAILED_TRANSACTION: SqlState = SqlState::InFailedSqlTransaction;
    pub const ACTIVE_SQL_TRANSACTION: SqlState = SqlState::ActiveSqlTransaction;
    pub const NO_ACTIVE_SQL_TRANSACTION: SqlState = SqlState::NoActiveSqlTransaction;
    pub const SAVEPOINT_EXCEPTION_INVALID: SqlState = SqlState::InvalidSavepointSpecification;
    pub const NULL_VALUE_NOT_ALLOWED: SqlState = SqlState::NullValueNotAllowed;
    pub const CANT_CHANGE_RUNTIME_PARAM: SqlState = SqlState::CantChangeRuntimeParam;
    pub const LOCK_NOT_AVAILABLE: SqlState = SqlState::LockNotAvailable;
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState::FeatureNotSupported;
    pub const QUERY_CANCELED: SqlState = SqlState::QueryCanceled;
    pub const OUT_OF_MEMORY: SqlState = SqlState::OutOfMemory;
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState::TooManyConnections;
    pub const INVALID_PASSWORD: SqlState = SqlState::InvalidPassword;
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState::InsufficientPrivilege;
    pub const PROTOCOL_VIOLATION: SqlState = SqlState::ProtocolViolation;
    pub const UNDEFINED_OBJECT: SqlState = SqlState::UndefinedObject;
    pub const INTERNAL: SqlState = SqlState::InternalError;
    pub const ADMIN_SHUTDOWN: SqlState = SqlState::AdminShutdown;
}

impl SqlError {
    pub fn new(code: SqlState, message: impl Into<String>) -> SqlError {
        SqlError { code, message: message.into(), detail: None, hint: None, retry: None }
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> SqlError {
        self.detail = Some(detail.into());
        self
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> SqlError {
        self.hint = Some(hint.into());
        self
    }
    pub fn unsupported(what: impl std::fmt::Display) -> SqlError {
        SqlError::new(codes::FEATURE_NOT_SUPPORTED, format!("not supported: {what}"))
    }
    pub fn syntax(message: impl Into<String>) -> SqlError {
        SqlError::new(codes::SYNTAX_ERROR, message)
    }
    pub fn internal(message: impl Into<String>) -> SqlError {
        SqlError::new(codes::INTERNAL, message)
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for SqlError {}

impl From<bkg_kernel::Error> for SqlError {
    fn from(e: bkg_kernel::Error) -> SqlError {
        let code = e.code();
        if matches!(code, ErrorCode::Io | ErrorCode::Corruption | ErrorCode::Internal) {
            tracing::error!(error = %e, "kernel error");
        }
        let state = SqlState::from_code(code.sqlstate()).unwrap_or(SqlState::InternalError);
        let mut out = SqlError::new(state, e.to_string());
        out.detail = e.detail();
        out.retry = match e {
            bkg_kernel::Error::LockWait { table, rowid, holder } => Some(Retry::LockWait(table, rowid, holder)),
            bkg_kernel::Error::SerializationFailure { .. } => Some(Retry::Conflict),
            _ => None,
        };
        out
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for SqlError {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> SqlError {
        let msg = match e {
            datafusion::sql::sqlparser::parser::ParserError::TokenizerError(m)
            | datafusion::sql::sqlparser::parser::ParserError::ParserError(m) => m,
            datafusion::sql::sqlparser::parser::ParserError::RecursionLimitExceeded => {
                return SqlError::new(SqlState::StatementTooComplex, "statement is too deeply nested");
            }
        };
        SqlError::syntax(format!("syntax error: {msg}"))
    }
}

impl From<datafusion::arrow::error::ArrowError> for SqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> SqlError {
        use datafusion::arrow::error::ArrowError as A;
        match e {
            A::DivideByZero => SqlError::new(codes::DIVISION_BY_ZERO, "division by zero"),
            A::CastError(m) | A::ParseError(m) => SqlError::new(codes::INVALID_TEXT_REPRESENTATION, m),
            A::ArithmeticOverflow(m) => SqlError::new(codes::NUMERIC_VALUE_OUT_OF_RANGE, m),
            A::ComputeError(m) if m.contains("Overflow") || m.contains("overflow") => {
                SqlError::new(codes::NUMERIC_VALUE_OUT_OF_RANGE, m)
            }
            A::ComputeError(m) if is_regex_error(&m) => invalid_regex(&m),
            A::ExternalError(inner) => match inner.downcast::<SqlError>() {
                Ok(s) => *s,
                Err(other) => SqlError::internal(other.to_string()),
            },
            other => SqlError::internal(other.to_string()),
        }
    }
}

impl From<datafusion::parquet::errors::ParquetError> for SqlError {
    fn from(e: datafusion::parquet::errors::ParquetError) -> SqlError {
        match e {
            datafusion::parquet::errors::ParquetError::External(inner) => match inner.downcast::<SqlError>() {
                Ok(s) => *s,
                Err(other) => SqlError::new(SqlState::IoError, format!("export write: {other}")),
            },
            datafusion::parquet::errors::ParquetError::ArrowError(m) => {
                SqlError::new(codes::FEATURE_NOT_SUPPORTED, format!("cannot write as Parquet: {m}"))
            }
            other => SqlError::new(SqlState::IoError, format!("export write: {other}")),
        }
    }
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> SqlError {
        match e {
            DataFusionError::Context(_, inner) => SqlError::from(*inner),
            DataFusionError::Diagnostic(_, inner) => SqlError::from(*inner),
            DataFusionError::Shared(inner) => match std::sync::Arc::try_unwrap(inner) {
                Ok(inner) => SqlError::from(inner),
                Err(shared) => SqlError::internal(shared.to_string()),
            },
            DataFusionError::SQL(p, _) => SqlError::from(*p),
            DataFusionError::ArrowError(a, _) => SqlError::from(*a),
            DataFusionError::NotImplemented(m) => SqlError::new(codes::FEATURE_NOT_SUPPORTED, m),
            DataFusionError::ResourcesExhausted(m) => {
                SqlError::new(codes::OUT_OF_MEMORY, format!("out of memory: {m}"))
            }
            DataFusionError::SchemaError(s, _) => {
                let text = s.to_string();
                match *s {
                    datafusion::common::SchemaError::FieldNotFound { ref field, .. } => {
                        SqlError::new(codes::UNDEFINED_COLUMN, format!("column \"{}\" does not exist", field.name()))
                    }
                    datafusion::common::SchemaError::AmbiguousReference { ref field } => SqlError::new(
                        SqlState::AmbiguousColumn,
                        format!("column reference \"{}\" is ambiguous", field.name()),
                    ),
                    _ => SqlError::new(SqlState::InvalidColumnReference, text),
                }
            }
            DataFusionError::External(inner) => match inner.downcast::<SqlError>() {
                Ok(s) => *s,
                Err(inner) => match inner.downcast::<bkg_kernel::Error>() {
                    Ok(k) => SqlError::from(*k),
                    Err(inner) => match inner.downcast::<DataFusionError>() {
                        Ok(d) => SqlError::from(*d),
                        Err(inner) => match inner.downcast::<datafusion::arrow::error::ArrowError>() {
                            Ok(a) => SqlError::from(*a),
                            Err(other) if is_regex_error(&other.to_string()) => invalid_regex(&other.to_string()),
                            Err(other) => SqlError::internal(other.to_string()),
                        },
                    },
                },
            },
            DataFusionError::Plan(m) => plan_error(m),
            DataFusionError::Execution(m) => execution_error(m),
            DataFusionError::ExecutionJoin(e) => SqlError::internal(e.to_string()),
            other if is_regex_error(&other.to_string()) => invalid_regex(&other.to_string()),
            other => SqlError::internal(other.to_string()),
        }
    }
}

fn plan_error(m: String) -> SqlError {
    if let Some(rest) = m.strip_prefix("table '").and_then(|r| r.strip_suffix("' not found")) {
        let name = rest.rsplit('.').next().unwrap_or(rest);
        return SqlError::new(codes::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist"));
    }
    if m.contains("Invalid function") || m.contains("No function matches") {
        return SqlError::new(codes::UNDEFINED_FUNCTION, m);
    }
    if m.contains("Cannot infer common") || m.contains("Cannot coerce") || m.contains("There isn't a common type") {
        return SqlError::new(codes::DATATYPE_MISMATCH, m);
    }
    if m.contains("Unsupported") || m.contains("not supported") {
        return SqlError::new(codes::FEATURE_NOT_SUPPORTED, m);
    }
    SqlError::new(codes::SYNTAX_ERROR, m)
}

fn is_regex_error(m: &str) -> bool {
    m.contains("regex parse error") || m.contains("Regular expression did not compile")
}

/// 2201B, with the regex engine's message (its first line) as the detail.
fn invalid_regex(m: &str) -> SqlError {
    SqlError::new(SqlState::InvalidRegularExpression, "invalid regular expression")
        .with_detail(m.lines().take(4).collect::<Vec<_>>().join(" "))
}

fn execution_error(m: String) -> SqlError {
    if is_regex_error(&m) {
        return invalid_regex(&m);
    }
    let lower = m.to_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        return SqlError::new(codes::DIVISION_BY_ZERO, "division by zero");
    }
    if lower.contains("cast") || lower.contains("parse") || lower.contains("invalid") {
        return SqlError::new(codes::INVALID_TEXT_REPRESENTATION, m);
    }
    if lower.contains("overflow") {
        return SqlError::new(codes::NUMERIC_VALUE_OUT_OF_RANGE, m);
    }
    SqlError::internal(m)
}

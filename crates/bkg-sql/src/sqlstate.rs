//! Every error code bkg-db answers with, in one enum: PostgreSQL's SQLSTATEs, PostgREST's
//! `PGRST*` codes (REST), and bkg-db's own `BKG*` codes (migrations). Each has its code text,
//! its condition name, and the HTTP status it maps to; pgwire sends the code as is, REST and the
//! other HTTP doors answer with [`SqlState::http_status`], Flight with [`SqlState::grpc_class`].

/// Declares the states with their code and name, and the lookups over all of them.
macro_rules! states {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $name:literal; )*) => {
        /// One error code. See the module documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum SqlState {
            $( $(#[$doc])* $variant, )*
        }

        impl SqlState {
            /// Every state, in declaration order.
            pub const ALL: &'static [SqlState] = &[$( SqlState::$variant, )*];

            /// The code as clients see it (`23505`, `PGRST116`, `BKG101`).
            pub const fn code(self) -> &'static str {
                match self { $( SqlState::$variant => $code, )* }
            }

            /// PostgreSQL's condition name (`unique_violation`), or a short name for the
            /// PGRST/BKG codes.
            pub const fn name(self) -> &'static str {
                match self { $( SqlState::$variant => $name, )* }
            }

            /// The state with this code, if it is one of ours.
            pub fn from_code(code: &str) -> Option<SqlState> {
                match code { $( $code => Some(SqlState::$variant), )* _ => None }
            }
        }
    };
}

states! {
    // Class 08: connection exception
    ProtocolViolation = "08P01", "protocol_violation";
    // Class 0A, 0L
    FeatureNotSupported = "0A000", "feature_not_supported";
    InvalidGrantOperation = "0LP01", "invalid_grant_operation";
    // Class 21, 22: cardinality, data exception
    CardinalityViolation = "21000", "cardinality_violation";
    StringDataRightTruncation = "22001", "string_data_right_truncation";
    NumericValueOutOfRange = "22003", "numeric_value_out_of_range";
    NullValueNotAllowed = "22004", "null_value_not_allowed";
    InvalidDatetimeFormat = "22007", "invalid_datetime_format";
    DatetimeFieldOverflow = "22008", "datetime_field_overflow";
    SequenceGeneratorLimitExceeded = "2200H", "sequence_generator_limit_exceeded";
    DivisionByZero = "22012", "division_by_zero";
    InvalidRegularExpression = "2201B", "invalid_regular_expression";
    InvalidRowCountInLimitClause = "2201W", "invalid_row_count_in_limit_clause";
    CharacterNotInRepertoire = "22021", "character_not_in_repertoire";
    InvalidParameterValue = "22023", "invalid_parameter_value";
    ArraySubscriptError = "2202E", "array_subscript_error";
    InvalidTextRepresentation = "22P02", "invalid_text_representation";
    InvalidBinaryRepresentation = "22P03", "invalid_binary_representation";
    BadCopyFileFormat = "22P04", "bad_copy_file_format";
    // Class 23: integrity constraint violation
    NotNullViolation = "23502", "not_null_violation";
    CheckViolation = "23514", "check_violation";
    ForeignKeyViolation = "23503", "foreign_key_violation";
    UniqueViolation = "23505", "unique_violation";
    // Class 25, 26, 28, 2B: transaction state, statement name, authorization, dependencies
    ActiveSqlTransaction = "25001", "active_sql_transaction";
    ReadOnlySqlTransaction = "25006", "read_only_sql_transaction";
    NoActiveSqlTransaction = "25P01", "no_active_sql_transaction";
    InFailedSqlTransaction = "25P02", "in_failed_sql_transaction";
    IdleInTransactionSessionTimeout = "25P03", "idle_in_transaction_session_timeout";
    InvalidSqlStatementName = "26000", "invalid_sql_statement_name";
    InvalidAuthorizationSpecification = "28000", "invalid_authorization_specification";
    InvalidPassword = "28P01", "invalid_password";
    DependentObjectsStillExist = "2BP01", "dependent_objects_still_exist";
    // Class 34, 3B: cursors and savepoints
    InvalidCursorName = "34000", "invalid_cursor_name";
    InvalidSavepointSpecification = "3B001", "invalid_savepoint_specification";
    // Class 3D, 3F: catalog and schema names
    InvalidCatalogName = "3D000", "invalid_catalog_name";
    InvalidSchemaName = "3F000", "invalid_schema_name";
    // Class 40: transaction rollback
    SerializationFailure = "40001", "serialization_failure";
    DeadlockDetected = "40P01", "deadlock_detected";
    // Class 42: syntax error or access rule violation
    InsufficientPrivilege = "42501", "insufficient_privilege";
    SyntaxError = "42601", "syntax_error";
    NameTooLong = "42622", "name_too_long";
    DuplicateColumn = "42701", "duplicate_column";
    AmbiguousColumn = "42702", "ambiguous_column";
    UndefinedColumn = "42703", "undefined_column";
    UndefinedObject = "42704", "undefined_object";
    DuplicateObject = "42710", "duplicate_object";
    DuplicateCursor = "42P03", "duplicate_cursor";
    DatatypeMismatch = "42804", "datatype_mismatch";
    WrongObjectType = "42809", "wrong_object_type";
    InvalidForeignKey = "42830", "invalid_foreign_key";
    UndefinedFunction = "42883", "undefined_function";
    GeneratedAlways = "428C9", "generated_always";
    UndefinedTable = "42P01", "undefined_table";
    DuplicateSchema = "42P06", "duplicate_schema";
    DuplicateTable = "42P07", "duplicate_table";
    InvalidColumnReference = "42P10", "invalid_column_reference";
    InvalidTableDefinition = "42P16", "invalid_table_definition";
    InvalidObjectDefinition = "42P17", "invalid_object_definition";
    // Class 53, 54, 55, 57, 58: resources, limits, object state, intervention, system
    DiskFull = "53100", "disk_full";
    OutOfMemory = "53200", "out_of_memory";
    TooManyConnections = "53300", "too_many_connections";
    ConfigurationLimitExceeded = "53400", "configuration_limit_exceeded";
    ProgramLimitExceeded = "54000", "program_limit_exceeded";
    StatementTooComplex = "54001", "statement_too_complex";
    ObjectNotInPrerequisiteState = "55000", "object_not_in_prerequisite_state";
    ObjectInUse = "55006", "object_in_use";
    CantChangeRuntimeParam = "55P02", "cant_change_runtime_param";
    LockNotAvailable = "55P03", "lock_not_available";
    QueryCanceled = "57014", "query_canceled";
    AdminShutdown = "57P01", "admin_shutdown";
    IdleSessionTimeout = "57P05", "idle_session_timeout";
    IoError = "58030", "io_error";
    // Class P0, XX
    RaiseException = "P0001", "raise_exception";
    InternalError = "XX000", "internal_error";
    DataCorrupted = "XX001", "data_corrupted";
    // PostgREST (REST requests)
    /// A query string parameter that does not parse.
    PgrstQueryString = "PGRST100", "query_string";
    /// A request body that is not what the endpoint takes.
    PgrstBody = "PGRST102", "request_body";
    /// A range (Range header, offset) past the rows.
    PgrstRange = "PGRST103", "range";
    /// PUT without exactly the primary key in `eq` filters.
    PgrstPutKey = "PGRST105", "put_key";
    /// A schema (Accept-Profile, Content-Profile) that is not exposed.
    PgrstSchema = "PGRST106", "schema";
    /// An Accept or Content-Type the endpoint cannot produce or read.
    PgrstMediaType = "PGRST107", "media_type";
    /// A filter on a resource that is not embedded.
    PgrstNotEmbedded = "PGRST108", "not_embedded";
    /// A PUT body whose key differs from the URL's.
    PgrstPutMismatch = "PGRST115", "put_mismatch";
    /// A single object asked for, and not one row.
    PgrstSingular = "PGRST116", "singular";
    /// An HTTP method the endpoint does not have.
    PgrstMethod = "PGRST117", "method";
    /// A path that names no endpoint.
    PgrstPath = "PGRST125", "path";
    /// No relationship between the tables of an embedding.
    PgrstNoRelationship = "PGRST200", "no_relationship";
    /// More than one relationship could be meant by an embedding.
    PgrstAmbiguousRelationship = "PGRST201", "ambiguous_relationship";
    /// No function of that name and arguments.
    PgrstNoFunction = "PGRST202", "no_function";
    /// A column the body names that the table lacks.
    PgrstNoColumn = "PGRST204", "no_column";
    /// A token that does not verify (signature, expiry, audience, role).
    PgrstJwt = "PGRST301", "jwt";
    /// No API key or token with a request that needs one.
    PgrstNoCredentials = "PGRST302", "no_credentials";
    /// A body larger than the limit.
    PgrstTooLarge = "PGRST413", "too_large";
    /// Too many requests from one client.
    PgrstRateLimit = "PGRST429", "rate_limit";
    // bkg-db (migrations)
    /// A migration already applied was edited.
    BkgMigrationEdited = "BKG101", "migration_edited";
    /// A migration file name (or set of names) that is not valid.
    BkgMigrationName = "BKG102", "migration_name";
    /// Transaction control inside a migration file.
    BkgMigrationTransaction = "BKG103", "migration_transaction";
    /// A migrations directory or file that cannot be read.
    BkgMigrationRead = "BKG104", "migration_read";
    // bkg-db (realtime)
    /// A resume point (Last-Event-ID) the WAL no longer holds: subscribe again from now.
    BkgResumeGone = "BKG201", "resume_point_gone";
}

impl SqlState {
    /// The two-character class of a SQLSTATE (`23` of `23505`); `PG` or `BK` for ours.
    pub fn class(self) -> &'static str {
        &self.code()[..2]
    }

    /// The HTTP status PostgREST gives this state, and ours for ours. `anonymous` decides
    /// 42501: 401 for a request without a user token, 403 for a user who lacks the privilege.
    pub fn http_status(self, anonymous: bool) -> u16 {
        use SqlState as S;
        match self {
            S::ForeignKeyViolation | S::UniqueViolation | S::BkgMigrationEdited => 409,
            S::ReadOnlySqlTransaction | S::PgrstPutKey | S::PgrstMethod => 405,
            S::UndefinedFunction | S::UndefinedTable | S::PgrstPath | S::PgrstNoFunction => 404,
            S::InsufficientPrivilege if anonymous => 401,
            S::InsufficientPrivilege => 403,
            S::QueryCanceled => 504,
            S::RaiseException => 400,
            S::InvalidObjectDefinition => 500,
            S::PgrstRange => 416,
            S::PgrstMediaType | S::PgrstSingular | S::PgrstSchema => 406,
            S::PgrstJwt | S::PgrstNoCredentials => 401,
            S::PgrstTooLarge => 413,
            S::PgrstRateLimit => 429,
            S::PgrstNoRelationship => 400,
            S::BkgResumeGone => 410,
            // PostgREST answers an ambiguous embedding with 300 Multiple Choices.
            S::PgrstAmbiguousRelationship => 300,
            _ => match self.class() {
                "08" | "53" => 503,
                "0L" | "0P" | "28" => 403,
                "54" => 413,
                "09" | "25" | "2D" | "38" | "39" | "3B" | "40" | "55" | "57" | "58" | "F0" | "HV" | "P0" | "XX" => 500,
                _ => 400,
            },
        }
    }

    /// How Flight (gRPC) reports the state.
    pub fn grpc_class(self) -> GrpcClass {
        use SqlState as S;
        match self {
            S::InsufficientPrivilege => GrpcClass::PermissionDenied,
            S::UndefinedTable | S::UndefinedObject | S::UndefinedFunction | S::InvalidSchemaName => GrpcClass::NotFound,
            S::DuplicateTable | S::UniqueViolation | S::DuplicateSchema | S::DuplicateObject => {
                GrpcClass::AlreadyExists
            }
            S::QueryCanceled => GrpcClass::Cancelled,
            S::BkgResumeGone => GrpcClass::FailedPrecondition,
            S::ProgramLimitExceeded | S::StatementTooComplex => GrpcClass::ResourceExhausted,
            _ => match self.class() {
                "28" => GrpcClass::Unauthenticated,
                "40" => GrpcClass::Aborted,
                "53" => GrpcClass::ResourceExhausted,
                "0A" => GrpcClass::Unimplemented,
                "23" | "25" | "55" => GrpcClass::FailedPrecondition,
                "22" | "42" | "08" | "26" => GrpcClass::InvalidArgument,
                _ => GrpcClass::Internal,
            },
        }
    }
}

/// The gRPC status class of a [`SqlState`] (tonic's `Code`, without depending on tonic here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcClass {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    Aborted,
    Cancelled,
    Unimplemented,
    ResourceExhausted,
    Unavailable,
    FailedPrecondition,
    Internal,
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl PartialEq<&str> for SqlState {
    fn eq(&self, other: &&str) -> bool {
        self.code() == *other
    }
}

impl PartialEq<str> for SqlState {
    fn eq(&self, other: &str) -> bool {
        self.code() == other
    }
}

impl serde::Serialize for SqlState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_well_formed_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for s in SqlState::ALL {
            let code = s.code();
            assert!(seen.insert(code), "{code} twice");
            let ours = code.starts_with("PGRST") || code.starts_with("BKG");
            assert!(ours || (code.len() == 5 && code.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())));
            assert_eq!(SqlState::from_code(code), Some(*s));
            assert!((300..600).contains(&s.http_status(false)), "{code}");
        }
        assert_eq!(SqlState::from_code("99999"), None);
    }

    #[test]
    fn every_kernel_error_code_has_a_state() {
        use bkg_kernel::ErrorCode as K;
        for k in [
            K::UniqueViolation,
            K::ForeignKeyViolation,
            K::NotNullViolation,
            K::SerializationFailure,
            K::UndefinedTable,
            K::UndefinedColumn,
            K::UndefinedSchema,
            K::UndefinedObject,
            K::DuplicateTable,
            K::DuplicateSchema,
            K::DuplicateColumn,
            K::DuplicateObject,
            K::DependentObjects,
            K::InvalidDefinition,
            K::InvalidGrant,
            K::LockNotAvailable,
            K::Deadlock,
            K::DiskFull,
            K::Io,
            K::Corruption,
            K::ProgramLimit,
            K::Internal,
        ] {
            assert!(SqlState::from_code(k.sqlstate()).is_some(), "{k:?}");
        }
    }

    #[test]
    fn http_statuses_follow_postgrest() {
        assert_eq!(SqlState::UniqueViolation.http_status(false), 409);
        assert_eq!(SqlState::InsufficientPrivilege.http_status(true), 401);
        assert_eq!(SqlState::InsufficientPrivilege.http_status(false), 403);
        assert_eq!(SqlState::UndefinedTable.http_status(false), 404);
        assert_eq!(SqlState::TooManyConnections.http_status(false), 503);
        assert_eq!(SqlState::ProgramLimitExceeded.http_status(false), 413);
        assert_eq!(SqlState::InternalError.http_status(false), 500);
        assert_eq!(SqlState::InvalidTextRepresentation.http_status(false), 400);
        assert_eq!(SqlState::PgrstSingular.http_status(false), 406);
        assert_eq!(SqlState::UndefinedColumn.http_status(false), 400);
        assert_eq!(SqlState::SerializationFailure.http_status(false), 500);
        assert_eq!(SqlState::StatementTooComplex.http_status(false), 413);
        assert_eq!(SqlState::BkgMigrationEdited.http_status(false), 409);
        assert_eq!(SqlState::BkgMigrationName.http_status(false), 400);
    }
}

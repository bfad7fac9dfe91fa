//! Flight SQL metadata answers: server info, types, catalogs, schemas, tables, primary keys.
//! Only what the caller may see is listed: superusers see everything, other roles the schemas
//! they may use and the relations they hold a privilege on.

use std::sync::Arc;

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, Nullable, Searchable, SqlInfo,
    SqlSupportedTransaction, XdbcDataType,
};
use bkg_kernel::{AclObject, Catalog};
use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use arrow_flight::error::FlightError;
use datafusion::catalog::TableProvider;

use bkg_sql::error::{SqlError, SqlResult};

fn fe(e: FlightError) -> SqlError {
    SqlError::internal(e.to_string())
}
use bkg_sql::provider::{DATABASE_NAME, MvccTable};

pub fn sql_info() -> SqlInfoData {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "bkg-db");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::Savepoint as i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, true);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlTransactionsSupported, true);
    b.build().expect("static server info")
}

pub fn xdbc_types() -> XdbcTypeInfoData {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let t = |name: &str, data_type: XdbcDataType, size: Option<i32>, quoted: bool| XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size: size,
        literal_prefix: quoted.then(|| "'".into()),
        literal_suffix: quoted.then(|| "'".into()),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: quoted,
        searchable: Searchable::Full,
        unsigned_attribute: (!quoted).then_some(false),
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: (!quoted).then_some(10),
        interval_precision: None,
    };
    for info in [
        t("boolean", XdbcDataType::XdbcBit, Some(1), false),
        t("smallint", XdbcDataType::XdbcSmallint, Some(5), false),
        t("integer", XdbcDataType::XdbcInteger, Some(10), false),
        t("bigint", XdbcDataType::XdbcBigint, Some(19), false),
        t("real", XdbcDataType::XdbcReal, Some(8), false),
        t("double precision", XdbcDataType::XdbcDouble, Some(17), false),
        t("numeric", XdbcDataType::XdbcNumeric, Some(38), false),
        t("text", XdbcDataType::XdbcVarchar, None, true),
        t("varchar", XdbcDataType::XdbcVarchar, None, true),
        t("bytea", XdbcDataType::XdbcVarbinary, None, true),
        t("date", XdbcDataType::XdbcDate, Some(10), true),
        t("time", XdbcDataType::XdbcTime, Some(15), true),
        t("timestamp", XdbcDataType::XdbcTimestamp, Some(26), true),
        t("timestamptz", XdbcDataType::XdbcTimestamp, Some(32), true),
        t("interval", XdbcDataType::XdbcInterval, None, true),
        t("uuid", XdbcDataType::XdbcChar, Some(36), true),
        t("json", XdbcDataType::XdbcLongvarchar, None, true),
        t("jsonb", XdbcDataType::XdbcLongvarchar, None, true),
    ] {
        b.append(info);
    }
    b.build().expect("static type info")
}

/// What a role may see of the catalog.
pub struct Visible<'a> {
    pub cat: &'a Catalog,
    pub role: u64,
}

impl Visible<'_> {
    fn all(&self) -> bool {
        self.cat.is_superuser(self.role)
    }

    pub fn schema(&self, name: &str) -> bool {
        self.all() || self.cat.privileges(self.role, AclObject::Schema(name)).is_ok_and(|p| p != 0)
    }

    pub fn relation(&self, schema: &str, id: u64) -> bool {
        self.all()
            || (self.schema(schema) && self.cat.privileges(self.role, AclObject::Relation(id)).is_ok_and(|p| p != 0))
    }
}

fn catalog_matches(catalog: &Option<String>) -> bool {
    catalog.as_deref().is_none_or(|c| c == DATABASE_NAME)
}

pub fn db_schemas(v: &Visible, cmd: CommandGetDbSchemas) -> SqlResult<RecordBatch> {
    let ok = catalog_matches(&cmd.catalog);
    let mut b = cmd.into_builder();
    if ok {
        for name in v.cat.schemas.keys().filter(|s| v.schema(s)) {
            b.append(DATABASE_NAME, name);
        }
    }
    b.build().map_err(fe)
}

pub fn tables(v: &Visible, cmd: CommandGetTables) -> SqlResult<RecordBatch> {
    let ok = catalog_matches(&cmd.catalog);
    let mut b = cmd.into_builder();
    if ok {
        for t in v.cat.tables.values().filter(|t| v.relation(&t.schema, t.id)) {
            let schema = TableProvider::schema(&MvccTable::new(t.clone(), false));
            b.append(DATABASE_NAME, &t.schema, &t.name, "TABLE", &schema).map_err(fe)?;
        }
        for view in v.cat.views.values().filter(|w| v.relation(&w.schema, w.id)) {
            let fields: Vec<Field> = view.columns.iter().map(|(n, dt)| dt.arrow_field(n, true)).collect();
            b.append(DATABASE_NAME, &view.schema, &view.name, "VIEW", &Schema::new(fields)).map_err(fe)?;
        }
    }
    b.build().map_err(fe)
}

pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

pub fn primary_keys(v: &Visible, cmd: &CommandGetPrimaryKeys, default_schema: &str) -> SqlResult<RecordBatch> {
    let mut rows: Vec<(String, String, String, String, i32)> = Vec::new();
    if catalog_matches(&cmd.catalog) {
        let schema = cmd.db_schema.as_deref().unwrap_or(default_schema);
        if let Some(t) = v.cat.find_table(schema, &cmd.table).filter(|t| v.relation(&t.schema, t.id))
            && let Some(pk) = t.primary_key()
        {
            for (i, &c) in pk.columns.iter().enumerate() {
                rows.push((t.schema.clone(), t.name.clone(), t.columns[c].name.clone(), pk.name.clone(), i as i32 + 1));
            }
        }
    }
    let text = |f: fn(&(String, String, String, String, i32)) -> &str| {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as _
    };
    RecordBatch::try_new(
        primary_keys_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|_| DATABASE_NAME))) as _,
            text(|r| &r.0),
            text(|r| &r.1),
            text(|r| &r.2),
            text(|r| &r.3),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.4))) as _,
        ],
    )
    .map_err(|e| SqlError::internal(e.to_string()))
}

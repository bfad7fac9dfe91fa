//! Functions registered per session: catalog lookups, privileges, settings and claims.

use super::*;

type RowFn = dyn Fn(&[Option<String>]) -> Option<String> + Send + Sync;

/// A scalar function evaluated row by row on the text form of its arguments.
struct PgFn {
    name: String,
    sig: Signature,
    ret: A,
    f: Arc<RowFn>,
}

impl std::fmt::Debug for PgFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgFn({})", self.name)
    }
}
impl PartialEq for PgFn {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}
impl Eq for PgFn {}
impl Hash for PgFn {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

impl ScalarUDFImpl for PgFn {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.sig
    }
    fn return_type(&self, _: &[A]) -> DfResult<A> {
        Ok(self.ret.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        // All-scalar arguments give one value, whatever the batch size; a volatile function
        // (gen_random_uuid()) gives one per row.
        let per_row = self.sig.volatility == Volatility::Volatile && args.args.is_empty();
        let all_scalar = !per_row && args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = if all_scalar { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts: Vec<ArrayRef> =
            arrays.iter().map(|a| datafusion::arrow::compute::cast(a, &A::Utf8)).collect::<Result<_, _>>()?;
        let mut out: Vec<Option<String>> = Vec::with_capacity(n.max(1));
        for r in 0..n {
            let row: Vec<Option<String>> = texts
                .iter()
                .map(|t| {
                    let s = t.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                    if s.is_null(r) { None } else { Some(s.value(r).to_string()) }
                })
                .collect();
            out.push((self.f)(&row));
        }
        let arr: ArrayRef = Arc::new(StringArray::from(out));
        let arr = datafusion::arrow::compute::cast(&arr, &self.ret)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&arr, 0)?))
        } else {
            Ok(ColumnarValue::Array(arr))
        }
    }
}

use datafusion::arrow::array::Array;

pub(crate) fn udf(
    name: &str,
    sig: Signature,
    ret: A,
    f: impl Fn(&[Option<String>]) -> Option<String> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(PgFn { name: name.to_string(), sig, ret, f: Arc::new(f) })
}

/// `has_table_privilege([user,] table, privileges)` / `has_schema_privilege([user,] schema, privileges)`:
/// objects and users by name or oid, privileges as a comma-separated list.
fn has_privilege(cat: &Catalog, info: &SessionInfo, args: &[Option<String>], schema: bool) -> Option<String> {
    let (user, object, privs) = match args {
        [object, privs] => (info.user.read().clone(), object.clone()?, privs.clone()?),
        [user, object, privs] => (user.clone()?, object.clone()?, privs.clone()?),
        _ => return None,
    };
    let role = match user.parse::<u64>() {
        Ok(oid) => oid,
        Err(_) => cat.find_role(&user)?.oid,
    };
    let mut bits = 0;
    for p in privs.split(',') {
        let p = p.trim().to_uppercase();
        let p = p.trim_end_matches(" WITH GRANT OPTION");
        bits |=
            bkg_kernel::privilege::LETTERS.iter().map(|(b, _)| *b).find(|b| bkg_kernel::privilege::name(*b) == p)?;
    }
    let held = if schema {
        let name = match object.parse::<i64>() {
            Ok(oid) => cat.schemas.values().find(|s| s.id as i64 == oid)?.name.clone(),
            Err(_) => object.trim_matches('"').to_string(),
        };
        cat.privileges(role, bkg_kernel::AclObject::Schema(&name)).ok()?
    } else {
        let id = match object.parse::<u64>() {
            Ok(oid) => oid,
            Err(_) => {
                let (schema, name) = match object.split_once('.') {
                    Some((s, n)) => (s.trim_matches('"').to_string(), n.trim_matches('"').to_string()),
                    None => (info.schema.read().clone(), object.trim_matches('"').to_string()),
                };
                cat.find_table(&schema, &name).map(|t| t.id).or_else(|| cat.find_view(&schema, &name).map(|v| v.id))?
            }
        };
        cat.privileges(role, bkg_kernel::AclObject::Relation(id)).ok()?
    };
    Some((held & bits == bits).to_string())
}

/// What the session-bound functions read: the user and the current schema.
pub struct SessionInfo {
    /// `current_user`: changes with SET ROLE.
    pub user: RwLock<String>,
    pub session_user: RwLock<String>,
    pub schema: RwLock<String>,
    pub backend_pid: i32,
    /// The JWT claims of the principal the session acts for (set by the front door, never by
    /// a client setting); read by `auth.uid()`, `auth.role()`, `auth.jwt()`, `auth.email()`.
    pub claims: RwLock<Option<Arc<serde_json::Value>>>,
    /// The session's settings, for `current_setting()` (the session publishes every change).
    pub settings: RwLock<std::collections::BTreeMap<String, String>>,
    /// `set_config()` calls of the running statement, applied by the session when it ends.
    pub pending_settings: parking_lot::Mutex<Vec<(String, String, bool)>>,
    /// `pending_settings` may hold something: every statement checks this, not the lock.
    pub has_pending_settings: std::sync::atomic::AtomicBool,
}

/// A function of the session's JWT claims (NULL without a principal).
fn claim_udf(
    name: &str,
    info: &Arc<SessionInfo>,
    f: impl Fn(&serde_json::Value) -> Option<String> + Send + Sync + 'static,
) -> ScalarUDF {
    let info = info.clone();
    udf(name, Signature::nullary(Volatility::Stable), A::Utf8, move |_| f(info.claims.read().as_ref()?))
}

fn claim_text(claims: &serde_json::Value, name: &str) -> Option<String> {
    match claims.get(name)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The PostgreSQL compatibility functions of one session.
pub fn functions(view: Arc<CatalogView>, info: Arc<SessionInfo>, server_version: &str) -> Vec<ScalarUDF> {
    let st = Volatility::Stable;
    let any = |n: usize| Signature::any(n, Volatility::Stable);
    let var = Signature::variadic_any(Volatility::Stable);
    let version = format!(
        "PostgreSQL {server_version} (bkg-db {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION")
    );
    let v2 = view.clone();
    let v3 = view.clone();
    let v4 = view.clone();
    let i1 = info.clone();
    let i2 = info.clone();
    let i3 = info.clone();
    let i4 = info.clone();
    let i5 = info.clone();
    let v5 = view.clone();
    let mut all = vec![
        udf("version", Signature::nullary(st), A::Utf8, move |_| Some(version.clone())),
        udf("current_user", Signature::nullary(st), A::Utf8, move |_| Some(i1.user.read().clone())),
        udf("session_user", Signature::nullary(st), A::Utf8, move |_| Some(i2.session_user.read().clone())),
        udf("current_schema", Signature::nullary(st), A::Utf8, move |_| Some(i3.schema.read().clone())),
        udf("current_database", Signature::nullary(st), A::Utf8, |_| s(crate::provider::DATABASE_NAME)),
        udf("bkg_role_names", any(1), A::Utf8, {
            let v = view.clone();
            move |a| {
                // The argument is an oid[] rendered as text: "[16390, 16391]".
                let text = a.first()?.as_deref()?;
                let cat = v.get();
                let mut names: Vec<String> = text
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|d| d.parse::<u64>().ok())
                    .filter_map(|oid| cat.role(oid).map(|r| r.name.clone()))
                    .collect();
                names.sort();
                (!names.is_empty()).then(|| names.join(","))
            }
        }),
        claim_udf("auth.uid", &info, |c| claim_text(c, "sub")),
        claim_udf("auth.role", &info, |c| claim_text(c, "role")),
        claim_udf("auth.email", &info, |c| claim_text(c, "email")),
        claim_udf("auth.jwt", &info, |c| Some(c.to_string())),
        // The private realtime channel being authorised: bound by the policy engine while it
        // decides a join or a send (see `crate::changes`), NULL in a query.
        udf("realtime.topic", Signature::nullary(st), A::Utf8, |_| None),
        udf("pg_backend_pid", Signature::nullary(st), A::Int32, move |_| Some(i4.backend_pid.to_string())),
        udf("pg_get_userbyid", any(1), A::Utf8, {
            let v = view.clone();
            move |a| {
                let oid: u64 = a.first()?.as_deref()?.parse().ok()?;
                Some(v.get().role(oid).map(|r| r.name.clone()).unwrap_or_else(|| format!("unknown (OID={oid})")))
            }
        }),
        udf("pg_table_is_visible", any(1), A::Boolean, move |a| {
            // Visible when its schema is the one unqualified names resolve to.
            let oid: u64 = a.first()?.as_deref()?.parse().ok()?;
            let cat = v5.get();
            let schema = cat
                .tables
                .values()
                .find_map(|t| (t.id == oid || t.indexes.iter().any(|i| i.id == oid)).then(|| t.schema.clone()))
                .or_else(|| cat.views.get(&oid).map(|v| v.schema.clone()))?;
            Some((schema == *i5.schema.read()).to_string())
        }),
        udf("pg_relation_is_publishable", any(1), A::Boolean, {
            let v = view.clone();
            move |a| {
                // Every table is; views, indexes and the catalogs are not.
                let oid: u64 = a.first()?.as_deref()?.parse().ok()?;
                Some(v.get().tables.contains_key(&oid).to_string())
            }
        }),
        udf("pg_type_is_visible", any(1), A::Boolean, |_| s("true")),
        udf("pg_function_is_visible", any(1), A::Boolean, |_| s("true")),
        udf("has_table_privilege", var.clone(), A::Boolean, {
            let (v, i) = (view.clone(), info.clone());
            move |a| has_privilege(&v.get(), &i, a, false)
        }),
        udf("has_schema_privilege", var.clone(), A::Boolean, {
            let (v, i) = (view.clone(), info.clone());
            move |a| has_privilege(&v.get(), &i, a, true)
        }),
        udf("has_database_privilege", var.clone(), A::Boolean, |_| s("true")),
        udf("pg_encoding_to_char", any(1), A::Utf8, |_| s("UTF8")),
        udf("obj_description", var.clone(), A::Utf8, |_| None),
        udf("col_description", var.clone(), A::Utf8, |_| None),
        udf("shobj_description", var.clone(), A::Utf8, |_| None),
        udf("pg_get_expr", var.clone(), A::Utf8, |a| a.first().cloned().flatten()),
        udf("pg_get_partkeydef", var.clone(), A::Utf8, |_| None),
        // No partitions: no relation has a partition root.
        udf("pg_partition_root", any(1), A::Int64, |_| None),
        // In a select list: the relation itself, its only ancestor.
        udf("pg_partition_ancestors", any(1), A::Int64, |a| {
            a.first()?.as_deref()?.parse::<i64>().ok().map(|o| o.to_string())
        }),
        udf("pg_regclass_name", any(1), A::Utf8, {
            let (v, i) = (view.clone(), info.clone());
            move |a| {
                let oid: u64 = a.first()?.as_deref()?.parse().ok()?;
                let cat = v.get();
                let (schema, name) = cat
                    .tables
                    .values()
                    .find(|t| t.id == oid)
                    .map(|t| (t.schema.clone(), t.name.clone()))
                    .or_else(|| cat.views.get(&oid).map(|v| (v.schema.clone(), v.name.clone())))?;
                Some(if schema == *i.schema.read() { name } else { format!("{schema}.{name}") })
            }
        }),
        udf("pg_relation_size", var.clone(), A::Int64, |_| s("0")),
        udf("pg_total_relation_size", var.clone(), A::Int64, |_| s("0")),
        udf("pg_size_pretty", any(1), A::Utf8, |a| a[0].as_ref().map(|b| format!("{b} bytes"))),
        udf("format_type", any(2), A::Utf8, |a| {
            let oid = a[0].as_deref()?.parse().ok()?;
            format_type(oid, a[1].as_deref().and_then(|m| m.parse().ok()).unwrap_or(-1))
        }),
        udf("pg_get_indexdef", var.clone(), A::Utf8, move |a| {
            let oid: u64 = a.first()?.as_deref()?.parse().ok()?;
            let cat = v2.get();
            cat.tables.values().find_map(|t| t.indexes.iter().find(|i| i.id == oid).map(|i| index_def(t, i)))
        }),
        udf("pg_get_constraintdef", var.clone(), A::Utf8, move |a| {
            let oid: i64 = a.first()?.as_deref()?.parse().ok()?;
            constraint_def(&v3.get(), oid)
        }),
        udf("pg_get_viewdef", var.clone(), A::Utf8, move |a| {
            let oid: u64 = a.first()?.as_deref()?.parse().ok()?;
            v4.get().views.get(&oid).map(|v| v.sql.clone())
        }),
        udf("pg_get_function_result", var.clone(), A::Utf8, |_| None),
        udf("pg_get_function_arguments", var.clone(), A::Utf8, |_| None),
        udf("pg_get_function_identity_arguments", var.clone(), A::Utf8, |_| None),
        udf("pg_get_triggerdef", var.clone(), A::Utf8, |_| None),
        udf("pg_get_ruledef", var.clone(), A::Utf8, |_| None),
        udf("pg_get_statisticsobjdef_columns", var.clone(), A::Utf8, |_| None),
        udf("to_regtype", any(1), A::Int64, |a| type_oid_by_name(a[0].as_deref()?).map(|o| o.to_string())),
        udf("pg_is_in_recovery", Signature::nullary(st), A::Boolean, |_| s("false")),
        udf("txid_current", Signature::nullary(Volatility::Volatile), A::Int64, |_| s("1")),
        // PostgreSQL 13+: a version 4 (random) UUID, as text a uuid column takes.
        udf("gen_random_uuid", Signature::nullary(Volatility::Volatile), A::Utf8, |_| Some(random_uuid())),
        udf("pg_tablespace_location", var, A::Utf8, |_| s("")),
    ];
    all.extend(super::storage_fns::storage_functions());
    all.extend(super::settings_fns::settings_functions(info));
    all.extend(super::settings_fns::input_functions());
    all
}

/// A random (version 4) UUID in its text form.
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

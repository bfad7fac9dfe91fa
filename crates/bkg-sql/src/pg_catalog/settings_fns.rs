//! `current_setting(name [, missing_ok])` and `set_config(name, value, is_local)`.
//!
//! Both run inside a query, where the session cannot be changed: `current_setting` reads the
//! settings the session publishes in [`SessionInfo`], and `set_config` checks its arguments as
//! SET would, queues the change there and answers the new value; the session applies the queue
//! before anything else runs on it ([`crate::Session`] drains it at every entry point), with
//! the transaction rules of SET and SET LOCAL.

use super::*;
use crate::error::{SqlError, codes};
use datafusion::arrow::array::Array;
use datafusion::common::DataFusionError;

/// `set_config()` calls one statement may queue: each row of a query can make one.
pub const PENDING_SETTINGS_MAX: usize = 10_000;

type RowFn = dyn Fn(&[Option<String>]) -> Result<Option<String>, SqlError> + Send + Sync;

/// A function evaluated row by row on the text of its arguments that may fail with a SQLSTATE.
pub(crate) struct FallibleFn {
    name: &'static str,
    sig: Signature,
    f: Arc<RowFn>,
}

impl std::fmt::Debug for FallibleFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FallibleFn({})", self.name)
    }
}
impl PartialEq for FallibleFn {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}
impl Eq for FallibleFn {}
impl Hash for FallibleFn {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

impl ScalarUDFImpl for FallibleFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.sig
    }
    fn return_type(&self, _: &[A]) -> DfResult<A> {
        Ok(A::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = if all_scalar { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts: Vec<ArrayRef> =
            arrays.iter().map(|a| datafusion::arrow::compute::cast(a, &A::Utf8)).collect::<Result<_, _>>()?;
        let mut out: Vec<Option<String>> = Vec::with_capacity(n);
        for r in 0..n {
            let row: Vec<Option<String>> = texts
                .iter()
                .map(|t| {
                    let s = t.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                    (!s.is_null(r)).then(|| s.value(r).to_string())
                })
                .collect();
            out.push((self.f)(&row).map_err(|e| DataFusionError::External(Box::new(e)))?);
        }
        let arr: ArrayRef = Arc::new(StringArray::from(out));
        if all_scalar {
            Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&arr, 0)?))
        } else {
            Ok(ColumnarValue::Array(arr))
        }
    }
}

fn unrecognized(name: &str) -> SqlError {
    SqlError::new(codes::UNDEFINED_OBJECT, format!("unrecognized configuration parameter \"{name}\""))
}

/// The value `current_setting(name)` answers: a `set_config()` of this statement, else the
/// session's value or PostgreSQL's default; the JWT claims for `request.jwt.claims` (and one
/// claim for `request.jwt.claim.<name>`).
fn setting(info: &SessionInfo, name: &str) -> Option<String> {
    let key = name.trim().to_lowercase();
    if let Some((_, v, _)) = info.pending_settings.lock().iter().rev().find(|(n, _, _)| *n == key) {
        return Some(v.clone());
    }
    if key == "request.jwt.claims" {
        return info.claims.read().as_ref().map(|c| c.to_string());
    }
    if let Some(claim) = key.strip_prefix("request.jwt.claim.") {
        let claims = info.claims.read().clone()?;
        return claims.get(claim).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    crate::session::current_setting_in(&info.settings.read(), &key)
}

pub fn settings_functions(info: Arc<SessionInfo>) -> Vec<ScalarUDF> {
    let get = info.clone();
    let current_setting = FallibleFn {
        name: "current_setting",
        sig: Signature::variadic_any(Volatility::Stable),
        f: Arc::new(move |a| {
            let Some(name) = a.first().cloned().flatten() else { return Ok(None) };
            let missing_ok = a.get(1).cloned().flatten().is_some_and(|v| matches!(v.as_str(), "true" | "t" | "1"));
            match setting(&get, &name) {
                Some(v) => Ok(Some(v)),
                None if missing_ok => Ok(None),
                None => Err(unrecognized(&name)),
            }
        }),
    };
    let set = info;
    let set_config = FallibleFn {
        name: "set_config",
        sig: Signature::variadic_any(Volatility::Volatile),
        f: Arc::new(move |a| {
            let [name, value, is_local] = a else {
                return Err(SqlError::new(
                    codes::UNDEFINED_FUNCTION,
                    "function set_config takes three arguments (setting name, new value, is_local)",
                ));
            };
            let name = name
                .as_deref()
                .map(|n| n.trim().to_lowercase())
                .ok_or_else(|| SqlError::new(codes::NULL_VALUE_NOT_ALLOWED, "SET requires parameter name"))?;
            let value = value.clone().unwrap_or_default();
            let local = is_local.as_deref().is_some_and(|v| matches!(v, "true" | "t" | "1"));
            if name.starts_with("request.jwt") || name == "role" || name == "session_authorization" {
                // They change who the session acts as, which SET checks against the login role.
                return Err(SqlError::unsupported(format!("set_config('{name}', …)"))
                    .with_hint(format!("Use SET [LOCAL] {name} = …")));
            }
            crate::session::check_setting(&name, &value)?;
            let mut pending = set.pending_settings.lock();
            if pending.len() >= PENDING_SETTINGS_MAX {
                return Err(SqlError::new(
                    codes::PROGRAM_LIMIT_EXCEEDED,
                    format!("more than {PENDING_SETTINGS_MAX} set_config() calls in one statement"),
                ));
            }
            pending.push((name, value.clone(), local));
            set.has_pending_settings.store(true, std::sync::atomic::Ordering::Release);
            Ok(Some(value))
        }),
    };
    vec![ScalarUDF::new_from_impl(current_setting), ScalarUDF::new_from_impl(set_config)]
}

/// `bkg_uuid_in(text)` and `bkg_json_in(text)`: what `::uuid`, `::json` and `::jsonb` become
/// (values of those types are text here). A uuid comes out in its canonical form; json is
/// checked and kept as written.
pub fn input_functions() -> Vec<ScalarUDF> {
    let immutable = || Signature::any(1, Volatility::Immutable);
    let uuid = FallibleFn {
        name: "bkg_uuid_in",
        sig: immutable(),
        f: Arc::new(|a| a.first().cloned().flatten().map(|s| crate::types::normalize_uuid(&s)).transpose()),
    };
    let json = FallibleFn {
        name: "bkg_json_in",
        sig: immutable(),
        f: Arc::new(|a| {
            let Some(s) = a.first().cloned().flatten() else { return Ok(None) };
            match serde_json::from_str::<serde_json::Value>(&s) {
                Ok(_) => Ok(Some(s)),
                Err(e) => Err(SqlError::new(codes::INVALID_TEXT_REPRESENTATION, "invalid input syntax for type json")
                    .with_detail(e.to_string())),
            }
        }),
    };
    vec![ScalarUDF::new_from_impl(uuid), ScalarUDF::new_from_impl(json)]
}

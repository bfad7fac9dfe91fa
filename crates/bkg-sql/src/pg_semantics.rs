//! PostgreSQL semantics the planner does not give by default.
//!
//! Integer `+`, `-` and `*` wrap on overflow in DataFusion; PostgreSQL raises
//! `22003 numeric_value_out_of_range`. An analyzer rule (after type coercion, so operand types are
//! final) replaces those operators on integer operands with checked functions that keep the
//! operator's name and type, so result columns are named and typed as before. The same rule makes
//! `text::bytea` decode PostgreSQL's bytea input formats, and compares `char(n)` columns with
//! string literals as PostgreSQL compares bpchar values: `char(n)` values are stored blank-padded
//! to `n`, so a literal compared with one (`=`, `<>`, `<`, `<=`, `>`, `>=`, `IN`) is padded to `n`
//! too, and `c_mktsegment = 'BUILDING'` finds `'BUILDING  '`; `length()` and `||` drop the
//! padding. (`LIKE` sees it, as in PostgreSQL.)

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug)]
struct CheckedOp {
    op: Operator,
    name: String,
    sig: Signature,
}

impl PartialEq for CheckedOp {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}
impl Eq for CheckedOp {}
impl Hash for CheckedOp {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

impl ScalarUDFImpl for CheckedOp {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.sig
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(format!("{} {} {}", args[0].schema_name(), self.op, args[1].schema_name()))
    }
    fn display_name(&self, args: &[Expr]) -> Result<String> {
        Ok(format!("{} {} {}", args[0], self.op, args[1]))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = match self.op {
            Operator::Plus => numeric::add(&arrays[0], &arrays[1])?,
            Operator::Minus => numeric::sub(&arrays[0], &arrays[1])?,
            _ => numeric::mul(&arrays[0], &arrays[1])?,
        };
        if scalar {
            Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// `text::bytea` as PostgreSQL reads bytea input (hex or escape format), instead of Arrow's
/// cast that keeps the text's bytes.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ByteaIn {
    sig: Signature,
}

impl ScalarUDFImpl for ByteaIn {
    fn name(&self) -> &str {
        "bytea_in"
    }
    fn signature(&self) -> &Signature {
        &self.sig
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = super::types::bytea_from_text(&arrays[0])
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        if scalar {
            Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// Replaces wrapping integer arithmetic with checked arithmetic.
#[derive(Debug)]
pub struct CheckedIntegerArithmetic {
    bytea_in: Arc<ScalarUDF>,
    add: Arc<ScalarUDF>,
    sub: Arc<ScalarUDF>,
    mul: Arc<ScalarUDF>,
}

impl Default for CheckedIntegerArithmetic {
    fn default() -> Self {
        let udf = |op: Operator, name: &str| {
            Arc::new(ScalarUDF::new_from_impl(CheckedOp {
                op,
                name: name.into(),
                sig: Signature::any(2, Volatility::Immutable),
            }))
        };
        CheckedIntegerArithmetic {
            bytea_in: Arc::new(ScalarUDF::new_from_impl(ByteaIn { sig: Signature::any(1, Volatility::Immutable) })),
            add: udf(Operator::Plus, "int_add_checked"),
            sub: udf(Operator::Minus, "int_sub_checked"),
            mul: udf(Operator::Multiply, "int_mul_checked"),
        }
    }
}

fn is_int(t: &DataType) -> bool {
    matches!(t, DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64)
}

impl CheckedIntegerArithmetic {
    fn rewrite(&self, e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        e.transform_up(|e| {
            if let Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) = &e
                && matches!(field.data_type(), DataType::Binary | DataType::BinaryView | DataType::LargeBinary)
                && matches!(expr.get_type(schema), Ok(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8))
            {
                let f =
                    Expr::ScalarFunction(ScalarFunction::new_udf(self.bytea_in.clone(), vec![expr.as_ref().clone()]));
                return Ok(Transformed::yes(f.alias_if_changed(e.schema_name().to_string())?));
            }
            if let Some(padded) = pad_char_literals(&e, schema) {
                return Ok(Transformed::yes(padded));
            }
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else { return Ok(Transformed::no(e)) };
            let udf = match op {
                Operator::Plus => &self.add,
                Operator::Minus => &self.sub,
                Operator::Multiply => &self.mul,
                _ => return Ok(Transformed::no(e)),
            };
            let (Ok(lt), Ok(rt)) = (left.get_type(schema), right.get_type(schema)) else {
                return Ok(Transformed::no(e));
            };
            if lt != rt || !is_int(&lt) {
                return Ok(Transformed::no(e));
            }
            let args = vec![left.as_ref().clone(), right.as_ref().clone()];
            Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(udf.clone(), args))))
        })
    }
}

/// `n` of a `char(n)` column expression (possibly under an alias or a cast between string types).
fn char_length(e: &Expr, schema: &DFSchema) -> Option<usize> {
    match e {
        Expr::Column(c) => schema
            .qualified_field_from_column(c)
            .ok()?
            .1
            .metadata()
            .get(bkg_kernel::value::CHAR_LENGTH_METADATA_KEY)?
            .parse()
            .ok(),
        Expr::Cast(Cast { expr, field }) if is_string(field.data_type()) => char_length(expr, schema),
        _ => None,
    }
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

/// A string literal blank-padded to `n` characters (trailing blanks first dropped, as bpchar
/// input does); `None` if it is not a string literal or is longer than `n` without its blanks.
fn padded_literal(e: &Expr, n: usize) -> Option<Expr> {
    use datafusion::common::ScalarValue as S;
    let Expr::Literal(value, meta) = e else { return None };
    let (S::Utf8(Some(s)) | S::Utf8View(Some(s)) | S::LargeUtf8(Some(s))) = value else { return None };
    let trimmed = s.trim_end_matches(' ');
    let len = trimmed.chars().count();
    if len > n || (len == n && trimmed.len() == s.len()) {
        return None;
    }
    let mut padded = trimmed.to_string();
    padded.extend(std::iter::repeat_n(' ', n - len));
    let value = match value {
        S::Utf8View(_) => S::Utf8View(Some(padded)),
        S::LargeUtf8(_) => S::LargeUtf8(Some(padded)),
        _ => S::Utf8(Some(padded)),
    };
    Some(Expr::Literal(value, meta.clone()))
}

fn rtrim(e: &Expr) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(datafusion::functions::string::rtrim(), vec![e.clone()]))
}

/// Pads the string literals of a comparison with a `char(n)` column (see the module comment).
fn pad_char_literals(e: &Expr, schema: &DFSchema) -> Option<Expr> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            ) =>
        {
            if let Some(n) = char_length(left, schema)
                && let Some(lit) = padded_literal(right, n)
            {
                return Some(Expr::BinaryExpr(BinaryExpr::new(left.clone(), *op, Box::new(lit))));
            }
            if let Some(n) = char_length(right, schema)
                && let Some(lit) = padded_literal(left, n)
            {
                return Some(Expr::BinaryExpr(BinaryExpr::new(Box::new(lit), *op, right.clone())));
            }
            None
        }
        // bpchar's blanks do not count in length() and drop off in ||, as in PostgreSQL.
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::StringConcat, right })
            if char_length(left, schema).is_some() || char_length(right, schema).is_some() =>
        {
            let trim = |e: &Expr| if char_length(e, schema).is_some() { rtrim(e) } else { e.clone() };
            Some(Expr::BinaryExpr(BinaryExpr::new(Box::new(trim(left)), Operator::StringConcat, Box::new(trim(right)))))
        }
        Expr::ScalarFunction(f)
            if matches!(f.name(), "length" | "char_length" | "character_length")
                && f.args.len() == 1
                && char_length(&f.args[0], schema).is_some() =>
        {
            Some(Expr::ScalarFunction(ScalarFunction::new_udf(f.func.clone(), vec![rtrim(&f.args[0])])))
        }
        Expr::InList(in_list) => {
            let n = char_length(&in_list.expr, schema)?;
            let mut changed = false;
            let list = in_list
                .list
                .iter()
                .map(|item| match padded_literal(item, n) {
                    Some(p) => {
                        changed = true;
                        p
                    }
                    None => item.clone(),
                })
                .collect();
            changed.then(|| {
                Expr::InList(datafusion::logical_expr::expr::InList::new(in_list.expr.clone(), list, in_list.negated))
            })
        }
        _ => None,
    }
}

impl AnalyzerRule for CheckedIntegerArithmetic {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            let inputs = p.inputs();
            if inputs.is_empty() {
                return Ok(Transformed::no(p));
            }
            let mut schema = inputs[0].schema().as_ref().clone();
            for other in &inputs[1..] {
                schema.merge(other.schema());
            }
            // Nodes whose expressions name output columns keep those names (a padded literal
            // inside `sum(CASE WHEN c = '…' …)` would otherwise rename the aggregate).
            let named = matches!(p, LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Window(_));
            p.map_expressions(|e| {
                let name = named.then(|| e.schema_name().to_string());
                let t = self.rewrite(e, &schema)?;
                match name {
                    Some(name) if t.transformed => t.map_data(|e| e.alias_if_changed(name)),
                    _ => Ok(t),
                }
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "checked_integer_arithmetic"
    }
}

//! Result rows as JSON (the shapes PostgreSQL's `to_json` gives, from `bkg_sql::pg_format::json`)
//! and as CSV.

pub use bkg_sql::pg_format::json::{field_is_json, json_value, row_object};

/// Appends one CSV field (RFC 4180 quoting; NULL is empty).
pub fn csv_field(v: Option<&str>, out: &mut String) {
    let Some(v) = v else { return };
    if v.is_empty() || v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int32Array, StringArray, TimestampMicrosecondArray};

    #[test]
    fn json_shapes() {
        let mut s = String::new();
        json_value(&Int32Array::from(vec![Some(7), None]), 0, false, &mut s).unwrap();
        s.push(' ');
        json_value(&Int32Array::from(vec![Some(7), None]), 1, false, &mut s).unwrap();
        s.push(' ');
        json_value(&Float64Array::from(vec![f64::NAN]), 0, false, &mut s).unwrap();
        s.push(' ');
        json_value(&StringArray::from(vec!["{\"a\":1}"]), 0, true, &mut s).unwrap();
        s.push(' ');
        json_value(&StringArray::from(vec!["say \"hi\""]), 0, false, &mut s).unwrap();
        s.push(' ');
        let ts = TimestampMicrosecondArray::from(vec![1_700_000_000_000_000]).with_timezone("+00:00");
        json_value(&ts, 0, false, &mut s).unwrap();
        assert_eq!(s, r#"7 null "NaN" {"a":1} "say \"hi\"" "2023-11-14T22:13:20+00:00""#);
        let mut c = String::new();
        csv_field(Some("a,b"), &mut c);
        csv_field(None, &mut c);
        csv_field(Some("x"), &mut c);
        assert_eq!(c, "\"a,b\"x");
    }
}

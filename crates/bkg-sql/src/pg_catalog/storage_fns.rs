//! The helpers storage policies are written with, over an object's name (`folder/sub/file.png`):
//! `storage.foldername(name)` → `{folder,sub}` (text[]), `storage.filename(name)` → `file.png`,
//! `storage.extension(name)` → `png` (empty without a dot). A policy such as
//! `(storage.foldername(name))[1] = auth.uid()::text` gives each user a folder of their own.

use super::*;
use datafusion::arrow::array::Array;

/// The folders of an object name: every `/`-separated part but the last.
pub fn foldername(name: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop();
    parts
}

/// The last `/`-separated part of an object name.
pub fn filename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// What follows the last dot of the file name (empty when it has none).
pub fn extension(name: &str) -> &str {
    let f = filename(name);
    f.rsplit_once('.').map(|(_, e)| e).unwrap_or("")
}

/// `storage.foldername(text) → text[]`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FolderName {
    sig: Signature,
}

impl ScalarUDFImpl for FolderName {
    fn name(&self) -> &str {
        "storage.foldername"
    }
    fn signature(&self) -> &Signature {
        &self.sig
    }
    fn return_type(&self, _: &[A]) -> DfResult<A> {
        Ok(A::List(Arc::new(Field::new("item", A::Utf8, true))))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = matches!(args.args.first(), Some(ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text = datafusion::arrow::compute::cast(&arrays[0], &A::Utf8)?;
        let text = text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
        let mut b = datafusion::arrow::array::ListBuilder::new(datafusion::arrow::array::StringBuilder::new());
        for i in 0..text.len() {
            if text.is_null(i) {
                b.append_null();
            } else {
                for part in foldername(text.value(i)) {
                    b.values().append_value(part);
                }
                b.append(true);
            }
        }
        let arr: ArrayRef = Arc::new(b.finish());
        if scalar {
            Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&arr, 0)?))
        } else {
            Ok(ColumnarValue::Array(arr))
        }
    }
}

/// The storage helpers, registered with every session.
pub fn storage_functions() -> Vec<ScalarUDF> {
    let one = || Signature::any(1, Volatility::Immutable);
    vec![
        ScalarUDF::new_from_impl(FolderName { sig: one() }),
        udf("storage.filename", one(), A::Utf8, |a| Some(filename(a.first()?.as_deref()?).to_string())),
        udf("storage.extension", one(), A::Utf8, |a| Some(extension(a.first()?.as_deref()?).to_string())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_as_storage_policies_expect() {
        assert_eq!(foldername("u1/photos/cat.png"), ["u1", "photos"]);
        assert!(foldername("cat.png").is_empty());
        assert_eq!(filename("u1/photos/cat.png"), "cat.png");
        assert_eq!(extension("u1/photos/cat.tar.gz"), "gz");
        assert_eq!(extension("u1/README"), "");
        assert_eq!(extension("u1.d/README"), "");
    }
}

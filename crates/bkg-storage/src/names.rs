//! Bucket ids and object names the API accepts. Bytes are stored under keys of their own (see
//! [`crate::backend`]), so a name can never reach outside its bucket; these rules keep names
//! that clients and folder listings would mishandle out.

use crate::error::{StorageError, StorageResult};
use crate::limits::NAME_BYTES_MAX;

/// Bucket ids that would collide with the API's own paths (`/object/sign/...`).
const RESERVED: &[&str] = &["authenticated", "copy", "info", "list", "list-v2", "move", "public", "sign", "upload"];

/// A bucket id: 1 to 100 of letters, digits, `-`, `_`, `.` and spaces, not starting with `.` or
/// a space, and not one of the API's own path words.
pub fn bucket_id(id: &str) -> StorageResult<&str> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ');
    if id.is_empty() || id.len() > 100 || !id.chars().all(ok_char) || id.starts_with(['.', ' ']) {
        return Err(StorageError::invalid_key(format!(
            "Invalid bucket name {id:?}: 1 to 100 letters, digits, '-', '_', '.' or spaces"
        )));
    }
    if RESERVED.contains(&id) {
        return Err(StorageError::invalid_key(format!("Invalid bucket name {id:?}: reserved")));
    }
    Ok(id)
}

/// An object name: `/`-separated parts, none empty, `.` or `..`; no control character (NUL
/// included), no backslash; at most [`NAME_BYTES_MAX`] bytes.
pub fn object_name(name: &str) -> StorageResult<&str> {
    let bad = |why: &str| Err(StorageError::invalid_key(format!("Invalid key {name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > NAME_BYTES_MAX {
        return bad("longer than 1024 bytes");
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return bad("control characters and backslashes are not allowed");
    }
    if name.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return bad("empty, '.' and '..' path segments are not allowed");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_or_confuse_are_refused() {
        for ok in ["a.txt", "u1/photos/cat 1.png", "ü/ñ.txt", "a..b"] {
            assert!(object_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "a//b", "a/", "../x", "a/../b", "./a", "a\0b", "a\\b", "a\nb", &"x".repeat(1025)] {
            let e = object_name(bad).unwrap_err();
            assert_eq!((e.status, e.error), (400, "InvalidKey"), "{bad:?}");
        }
        assert!(bucket_id("avatars").is_ok() && bucket_id("my bucket-1.x").is_ok());
        for bad in ["", "a/b", ".hidden", "sign", "public", "x%2Fy", &"b".repeat(101)] {
            assert!(bucket_id(bad).is_err(), "{bad:?}");
        }
    }
}

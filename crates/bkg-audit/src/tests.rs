//! The log against tampering: every kind of edit is found, at the right place.

use std::path::{Path, PathBuf};

use crate::log::{segment_name, sig_path};
use crate::*;

fn ev(i: usize) -> Event {
    Event::new(
        Actor { role: "postgres".into(), ..Actor::default() },
        "policy.create",
        &format!("public.t{i}"),
        Outcome::Success,
    )
}

/// A log of `n` events in segments of about 700 bytes (several lines each), all sealed.
fn log_with(n: usize) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut log = AuditLog::open(&dir, LogOptions { segment_bytes_max: 700 }).unwrap();
    let events: Vec<Event> = (0..n).map(ev).collect();
    assert_eq!(log.append(&events).unwrap(), n);
    log.seal().unwrap();
    (tmp, dir)
}

fn seg(dir: &Path, n: u64) -> PathBuf {
    dir.join(segment_name(n))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

fn failure(dir: &Path) -> (String, usize, String) {
    match verify(dir, &[]) {
        Err(AuditError::Tampered { file, line, reason }) => (file, line, reason),
        other => panic!("expected a verification failure, got {other:?}"),
    }
}

#[test]
fn an_untouched_log_verifies() {
    let (_t, dir) = log_with(20);
    let r = verify(&dir, &[]).unwrap();
    assert!(r.segments >= 3, "{r:?}");
    assert_eq!(r.signed, r.segments);
    // Every segment adds its opening line.
    assert_eq!(r.lines, 20 + r.segments as u64);
    assert_eq!(r.head_seq, r.lines);
    assert_eq!(r.open_segment, None);
}

#[test]
fn an_edited_line_fails_at_the_next_line() {
    let (_t, dir) = log_with(20);
    let path = seg(&dir, 1);
    let mut l = lines(&path);
    l[1] = l[1].replace("public.t0", "public.tX");
    write_lines(&path, &l);
    let (file, line, reason) = failure(&dir);
    assert_eq!((file.as_str(), line), ("audit-000001.jsonl", 3), "{reason}");
}

#[test]
fn an_edited_last_line_of_a_segment_fails_at_its_signature() {
    let (_t, dir) = log_with(20);
    let path = seg(&dir, 1);
    let mut l = lines(&path);
    let last = l.len() - 1;
    l[last] = l[last].replace("policy.create", "policy.alter");
    write_lines(&path, &l);
    // The lines of the segment still chain; its signature is checked before the next segment
    // (whose first line would not chain either) and names the segment as a whole.
    let (file, line, reason) = failure(&dir);
    assert_eq!((file.as_str(), line), ("audit-000001.jsonl", 0), "{reason}");
    assert!(reason.contains("signature does not verify"), "{reason}");
}

#[test]
fn a_deleted_line_fails_where_it_was() {
    let (_t, dir) = log_with(20);
    let path = seg(&dir, 2);
    let mut l = lines(&path);
    assert!(l.len() >= 3, "the test needs a line after the deleted one");
    l.remove(1);
    write_lines(&path, &l);
    let (file, line, reason) = failure(&dir);
    assert_eq!((file.as_str(), line), ("audit-000002.jsonl", 2), "{reason}");
}

#[test]
fn reordered_lines_fail_at_the_first_moved_one() {
    let (_t, dir) = log_with(20);
    let path = seg(&dir, 2);
    let mut l = lines(&path);
    l.swap(1, 2);
    write_lines(&path, &l);
    let (file, line, _) = failure(&dir);
    assert_eq!((file.as_str(), line), ("audit-000002.jsonl", 2));
}

#[test]
fn truncation_fails() {
    // Cut inside a line.
    let (_t, dir) = log_with(20);
    let path = seg(&dir, 1);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let (file, line, reason) = failure(&dir);
    assert_eq!(file, "audit-000001.jsonl");
    assert_eq!(line, lines(&path).len(), "{reason}");
    assert!(reason.contains("incomplete"), "{reason}");
    // Cut at a line boundary: the segment's lines still chain, its signature does not verify.
    let (_t2, dir) = log_with(20);
    let path = seg(&dir, 2);
    let mut l = lines(&path);
    l.pop();
    write_lines(&path, &l);
    let (file, line, reason) = failure(&dir);
    assert_eq!((file.as_str(), line), ("audit-000002.jsonl", 0), "{reason}");
    assert!(reason.contains("signature"), "{reason}");
}

#[test]
fn swapped_segments_fail_at_their_first_line() {
    let (_t, dir) = log_with(20);
    let (a, b) = (seg(&dir, 2), seg(&dir, 3));
    let swap = |x: &Path, y: &Path| {
        let tmp = dir.join("swap");
        std::fs::rename(x, &tmp).unwrap();
        std::fs::rename(y, x).unwrap();
        std::fs::rename(&tmp, y).unwrap();
    };
    swap(&a, &b);
    swap(&sig_path(&a), &sig_path(&b));
    let (file, line, _) = failure(&dir);
    assert_eq!((file.as_str(), line), ("audit-000002.jsonl", 1));
}

#[test]
fn a_missing_segment_or_signature_fails() {
    let (_t, dir) = log_with(20);
    std::fs::remove_file(sig_path(&seg(&dir, 1))).unwrap();
    let (file, line, reason) = failure(&dir);
    assert_eq!((file.as_str(), line), ("audit-000001.jsonl", 0), "{reason}");
    let (_t2, dir) = log_with(20);
    std::fs::remove_file(seg(&dir, 2)).unwrap();
    let (file, _, reason) = failure(&dir);
    assert_eq!(file, "audit-000003.jsonl");
    assert!(reason.contains("segment 2 is missing"), "{reason}");
}

#[test]
fn a_log_rebuilt_with_another_key_fails_only_against_the_pinned_key() {
    let (_t, dir) = log_with(5);
    let genuine = log_public_keys(&dir);
    assert_eq!(genuine.len(), 1);
    assert!(verify(&dir, &genuine).is_ok());
    // Someone with write access to the directory rebuilds the whole log with a key of their
    // own: chain and signatures are consistent, and only a public key held elsewhere shows it.
    std::fs::remove_dir_all(&dir).unwrap();
    let mut forged = AuditLog::open(&dir, LogOptions { segment_bytes_max: 700 }).unwrap();
    forged.append(&(0..4).map(ev).collect::<Vec<_>>()).unwrap();
    forged.seal().unwrap();
    assert!(verify(&dir, &[]).is_ok());
    let (file, line, reason) = match verify(&dir, &genuine) {
        Err(AuditError::Tampered { file, line, reason }) => (file, line, reason),
        other => panic!("{other:?}"),
    };
    assert_eq!((file.as_str(), line), ("audit-000001.jsonl", 1));
    assert!(reason.contains("not among the given keys"), "{reason}");
}

fn log_public_keys(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("keys")).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect()
}

#[test]
fn a_crash_mid_write_is_cut_and_the_log_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let events: Vec<Event> = (0..3).map(ev).collect();
    {
        let mut log = AuditLog::open(&dir, LogOptions::default()).unwrap();
        log.append(&events).unwrap();
    }
    let path = seg(&dir, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"seq\":5,\"id\":\"half");
    std::fs::write(&path, &bytes).unwrap();
    assert!(verify(&dir, &[]).is_err());
    let mut log = AuditLog::open(&dir, LogOptions::default()).unwrap();
    // Events already written are not written again (a shipper that crashed sends them again).
    let more: Vec<Event> = events.iter().cloned().chain((3..5).map(ev)).collect();
    assert_eq!(log.append(&more).unwrap(), 2);
    let r = verify(&dir, &[]).unwrap();
    assert_eq!(r.lines, 6);
    assert_eq!(r.open_segment.as_deref(), Some("audit-000001.jsonl"));
    assert_eq!(log.head().0, 6);
}

#[test]
fn key_rotation_seals_and_the_next_segment_uses_the_new_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut log = AuditLog::open(&dir, LogOptions::default()).unwrap();
    let old = log.public_key().clone();
    log.append(&[ev(1)]).unwrap();
    let new = log.rotate_key().unwrap();
    assert_ne!(old.key_id, new.key_id);
    log.append(&[ev(2)]).unwrap();
    log.seal().unwrap();
    let r = verify(&dir, &[]).unwrap();
    assert_eq!((r.segments, r.signed), (2, 2));
    assert!(verify(&dir, &[old.public_pem.clone(), new.public_pem.clone()]).is_ok());
    let (file, line, reason) = match verify(&dir, &[new.public_pem]) {
        Err(AuditError::Tampered { file, line, reason }) => (file, line, reason),
        other => panic!("{other:?}"),
    };
    assert_eq!((file.as_str(), line), ("audit-000001.jsonl", 1), "{reason}");
    // Reopened, the log continues the chain into a third segment.
    drop(log);
    let mut log = AuditLog::open(&dir, LogOptions::default()).unwrap();
    assert_eq!(log.public_key().key_id, new.key_id);
    log.append(&[ev(3)]).unwrap();
    assert_eq!(verify(&dir, &[]).unwrap().open_segment.as_deref(), Some("audit-000003.jsonl"));
}

#[test]
fn pages_run_newest_first_with_filters() {
    let (_t, dir) = log_with(20);
    let q = Query { limit: 7, action: Some("policy".into()), ..Query::default() };
    let p1 = read_page(&dir, &q).unwrap();
    assert_eq!(p1.events.len(), 7);
    assert_eq!(p1.events[0].event.object, "public.t19");
    let p2 = read_page(&dir, &Query { before: p1.next_before, ..q.clone() }).unwrap();
    assert_eq!(p2.events[0].event.object, "public.t12");
    let p3 = read_page(&dir, &Query { before: p2.next_before, ..q }).unwrap();
    let objects: Vec<&str> = p3.events.iter().map(|l| l.event.object.as_str()).collect();
    assert_eq!(objects, ["public.t5", "public.t4", "public.t3", "public.t2", "public.t1", "public.t0"]);
    assert!(p3.next_before.is_none(), "a short page is the last");
    let none = read_page(&dir, &Query { limit: 5, action: Some("auth".into()), ..Query::default() }).unwrap();
    assert!(none.events.is_empty());
}

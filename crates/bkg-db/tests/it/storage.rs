//! Storage (/storage/v1): the bypass matrix over the storage door, and metadata and bytes that
//! stay consistent across kill -9 (no row without its bytes; bytes without a row collected).

use std::io::{Read, Write};

use serde_json::{Value, json};

use crate::rls::{SECRET, token};
use crate::server::TestServer;

struct Who {
    name: &'static str,
    key: String,
}

impl Who {
    fn headers(&self) -> Vec<(&str, &str)> {
        vec![("apikey", self.key.as_str()), ("Content-Type", "application/json")]
    }
}

fn call(s: &TestServer, who: &Who, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (status, _, body) = s.http(method, &format!("/storage/v1{path}"), &who.headers(), body);
    (status, body)
}

fn upload(s: &TestServer, who: &Who, bucket: &str, name: &str, bytes: &[u8]) -> u16 {
    let headers = [("apikey", who.key.as_str()), ("Content-Type", "text/plain")];
    s.http("POST", &format!("/storage/v1/object/{bucket}/{name}"), &headers, bytes).0
}

fn listed(body: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(body).unwrap_or(json!([]));
    v.as_array().into_iter().flatten().filter_map(|e| e["name"].as_str().map(str::to_string)).collect()
}

/// anon, user A, user B and the service role against a private bucket (a folder per user for
/// every command) and a public one (public reads, folder-per-user writes): upload, download,
/// list, sign, move, delete. Nobody reaches another user's objects; the service role reaches all.
#[tokio::test(flavor = "multi_thread")]
async fn bypass_matrix_over_storage() {
    let s = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET)]);
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE POLICY own_read ON storage.objects FOR SELECT TO authenticated
               USING (bucket_id = 'priv' AND (storage.foldername(name))[1] = auth.uid());
             CREATE POLICY own_insert ON storage.objects FOR INSERT TO authenticated
               WITH CHECK ((storage.foldername(name))[1] = auth.uid());
             CREATE POLICY own_update ON storage.objects FOR UPDATE TO authenticated
               USING ((storage.foldername(name))[1] = auth.uid() AND bucket_id = 'priv');
             CREATE POLICY own_delete ON storage.objects FOR DELETE TO authenticated
               USING ((storage.foldername(name))[1] = auth.uid());",
        )
        .await
        .unwrap();
    let who = |name, claims: Value| Who { name, key: token(claims) };
    let anon = who("anon", json!({"role": "anon"}));
    let a = who("A", json!({"role": "authenticated", "sub": "A"}));
    let b = who("B", json!({"role": "authenticated", "sub": "B"}));
    let service = who("service", json!({"role": "service_role"}));
    for (bucket, public) in [("priv", false), ("pub", true)] {
        let body = json!({"id": bucket, "public": public}).to_string();
        assert_eq!(call(&s, &service, "POST", "/bucket", body.as_bytes()).0, 200);
        for owner in ["A", "B"] {
            assert_eq!(upload(&s, &service, bucket, &format!("{owner}/doc.txt"), owner.as_bytes()), 200);
        }
    }
    for p in [&anon, &a, &b, &service] {
        let may_own_a = p.name == "A" || p.name == "service";
        for bucket in ["priv", "pub"] {
            let tag = format!("{} on {bucket}", p.name);
            // Upload into A's folder.
            let st = upload(&s, p, bucket, &format!("A/by-{}.txt", p.name), b"x");
            assert_eq!(st, if may_own_a { 200 } else { 403 }, "upload: {tag}");
            // Download A's object with a key: SELECT policies decide (none on pub for users).
            let readable = p.name == "service" || (p.name == "A" && bucket == "priv");
            let (st, body) = call(&s, p, "GET", &format!("/object/{bucket}/A/doc.txt"), b"");
            assert_eq!(st, if readable { 200 } else { 404 }, "download: {tag}");
            if readable {
                assert_eq!(body, "A");
            }
            // List A's folder.
            let (st, body) = call(&s, p, "POST", &format!("/object/list/{bucket}"), br#"{"prefix": "A"}"#);
            assert_eq!(st, 200, "list: {tag}");
            assert_eq!(listed(&body).contains(&"doc.txt".to_string()), readable, "list: {tag}: {body}");
            // Sign A's object.
            let (st, _) = call(&s, p, "POST", &format!("/object/sign/{bucket}/A/doc.txt"), br#"{"expiresIn": 60}"#);
            assert_eq!(st, if readable { 200 } else { 404 }, "sign: {tag}");
            // Move A's object and back (UPDATE policies; only on priv for users).
            let mv = |from: &str, to: &str| {
                let body = json!({"bucketId": bucket, "sourceKey": from, "destinationKey": to}).to_string();
                call(&s, p, "POST", "/object/move", body.as_bytes()).0
            };
            let movable = p.name == "service" || (p.name == "A" && bucket == "priv");
            let st = mv("A/doc.txt", "A/moved.txt");
            assert_eq!(st, if movable { 200 } else { 404 }, "move: {tag}");
            if movable {
                assert_eq!(mv("A/moved.txt", "A/doc.txt"), 200);
            }
            // Delete B's object: only B and the service role; the others delete nothing.
            if p.name == "anon" || p.name == "A" {
                let (st, body) = call(&s, p, "DELETE", &format!("/object/{bucket}"), br#"{"prefixes": ["B/doc.txt"]}"#);
                assert_eq!((st, body.as_str()), (200, "[]"), "delete: {tag}");
            }
        }
    }
    // Public reads need no key and no policy; B's objects are all still there.
    for bucket in ["priv", "pub"] {
        let (st, body) = s.http_get(&format!("/storage/v1/object/public/{bucket}/B/doc.txt"));
        assert_eq!((st, body.as_str()), if bucket == "pub" { (200, "B") } else { (404, body.as_str()) });
        let (st, body) = call(&s, &b, "DELETE", &format!("/object/{bucket}"), br#"{"prefixes": ["B/doc.txt"]}"#);
        assert_eq!(st, 200);
        // As in PostgreSQL, a DELETE only finds rows the SELECT policies show: on pub, users have
        // none (public reads go around policies), so B cannot delete there either.
        let want: &[&str] = if bucket == "priv" { &["B/doc.txt"] } else { &[] };
        assert_eq!(listed(&body), want, "B deletes its own on {bucket}");
    }
    // What each principal uploaded is what the table holds, with the uploader as owner.
    let rows = admin
        .query("SELECT bucket_id, name, owner_id FROM storage.objects WHERE name LIKE 'A/by-%' ORDER BY 1, 2", &[])
        .await
        .unwrap();
    let got: Vec<(String, String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let want = |bucket: &str| {
        vec![
            (bucket.to_string(), "A/by-A.txt".to_string(), Some("A".to_string())),
            (bucket.to_string(), "A/by-service.txt".to_string(), None),
        ]
    };
    assert_eq!(got, [want("priv"), want("pub")].concat());
}

/// Opens a chunked upload; its socket.
fn start_chunked(s: &TestServer, key: &str, name: &str) -> std::net::TcpStream {
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).unwrap();
    let head = format!(
        "POST /storage/v1/object/files/{name} HTTP/1.1\r\nHost: localhost\r\napikey: {key}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).unwrap();
    sock
}

/// Sends `total` bytes in chunks; false when the server stopped reading.
fn send_chunks(sock: &mut std::net::TcpStream, total: usize) -> bool {
    let chunk = vec![7u8; 64 << 10];
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        let frame = [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat();
        if sock.write_all(&frame).is_err() {
            return false;
        }
        sent += n;
    }
    true
}

/// A whole chunked upload of `total` bytes; the status.
fn chunked_upload(s: &TestServer, key: &str, name: &str, total: usize) -> Option<u16> {
    let mut sock = start_chunked(s, key, name);
    if send_chunks(&mut sock, total) {
        let _ = sock.write_all(b"0\r\n\r\n");
    }
    let mut buf = String::new();
    let _ = sock.read_to_string(&mut buf);
    buf.split_whitespace().nth(1).and_then(|c| c.parse().ok())
}

fn stored_versions(s: &TestServer) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.dir.join("storage/objects"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Uploads commit their row only after their bytes; a crash in the middle of an upload leaves
/// no row, and the bytes it left (or that a replaced object left) are collected at the next
/// start; uploads over the limit leave nothing, even without a Content-Length.
#[tokio::test(flavor = "multi_thread")]
async fn storage_metadata_and_bytes_agree_across_kill9() {
    let env = [
        ("BKG_DB_JWT_SECRET", SECRET),
        ("BKG_DB_STORAGE_FILE_SIZE_MAX_MB", "16"),
        ("BKG_DB_STORAGE_GC_GRACE_S", "0"),
        ("BKG_DB_STORAGE_GC_INTERVAL_S", "0"),
    ];
    let mut s = TestServer::start_with(&env);
    let service = Who { name: "service", key: token(json!({"role": "service_role"})) };
    assert_eq!(call(&s, &service, "POST", "/bucket", br#"{"id": "files"}"#).0, 200);
    let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(upload(&s, &service, "files", "keep/one.bin", &blob), 200);
    assert_eq!(upload(&s, &service, "files", "keep/two.txt", b"two"), 200);
    assert_eq!(stored_versions(&s).len(), 2);
    // Over the limit while streaming (no Content-Length to refuse up front): 413, nothing kept.
    assert_eq!(chunked_upload(&s, &service.key, "big.bin", 20 << 20), Some(413));
    assert_eq!(stored_versions(&s).len(), 2, "a refused upload leaves no bytes");
    // A replaced object's old bytes are released at once.
    let headers = [("apikey", service.key.as_str()), ("x-upsert", "true"), ("Content-Type", "text/plain")];
    assert_eq!(s.http("POST", "/storage/v1/object/files/keep/two.txt", &headers, b"two!").0, 200);
    assert_eq!(stored_versions(&s).len(), 2, "the old version is gone");
    // A crash in the middle of an upload (a multipart upload under way), and bytes that never got
    // their row (a crash between the last byte and the commit).
    // 10 MiB of a longer upload: past the first part, so a multipart upload is under way.
    let mut cut = start_chunked(&s, &service.key, "cut.bin");
    assert!(send_chunks(&mut cut, 10 << 20));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let staged = std::fs::read_dir(s.dir.join("storage/objects"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains('#'));
    assert!(staged, "an unfinished upload is staged: {:?}", stored_versions(&s));
    std::fs::write(s.dir.join("storage/objects/00000000-0000-4000-8000-00000000dead"), b"orphan").unwrap();
    s.kill9();
    drop(cut);
    // Collection spares what changed within the grace period (0 s here, at a second's grain).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    s.spawn();
    // Every row has its bytes, byte for byte; nothing else is stored after the collection.
    let (st, _, body) =
        s.http("GET", "/storage/v1/object/files/keep/two.txt", &[("apikey", service.key.as_str())], b"");
    assert_eq!((st, body.as_str()), (200, "two!"));
    let one = {
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).unwrap();
        write!(
            sock,
            "GET /storage/v1/object/files/keep/one.bin HTTP/1.1\r\nHost: x\r\napikey: {}\r\nConnection: close\r\n\r\n",
            service.key
        )
        .unwrap();
        let mut buf = Vec::new();
        sock.read_to_end(&mut buf).unwrap();
        let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf[at..].to_vec()
    };
    assert!(one == blob, "one.bin comes back byte for byte ({} bytes)", one.len());
    let admin = s.connect().await;
    let rows = admin.query("SELECT name, version FROM storage.objects ORDER BY name", &[]).await.unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["keep/one.bin", "keep/two.txt"], "the cut upload left no row");
    let mut versions: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    versions.sort();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stored_versions(&s) != versions {
        assert!(std::time::Instant::now() < deadline, "stored {:?}, rows {versions:?}", stored_versions(&s));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

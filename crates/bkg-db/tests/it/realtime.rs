//! Realtime over Server-Sent Events: the resume contract across a crash and restart, and the
//! connection limit under a burst.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::server::TestServer;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct Event {
    id: Option<String>,
    event: String,
    data: serde_json::Value,
}

/// An open event stream.
struct Stream {
    sock: std::net::TcpStream,
    /// Undecoded bytes (chunked transfer encoding) and decoded text.
    raw: Vec<u8>,
    text: String,
    pub status: u16,
}

impl Stream {
    fn open(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> Stream {
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        sock.write_all(req.as_bytes()).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut st = Stream { sock, raw: Vec::new(), text: String::new(), status: 0 };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            st.fill();
            if let Some(end) = find(&st.raw, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&st.raw[..end]).to_string();
                st.status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                st.raw.drain(..end + 4);
                if !head.to_lowercase().contains("transfer-encoding: chunked") {
                    // A plain (error) body.
                    st.text = String::from_utf8_lossy(&st.raw).to_string();
                }
                return st;
            }
        }
        panic!("no response head");
    }

    fn fill(&mut self) {
        let mut buf = [0u8; 65536];
        match self.sock.read(&mut buf) {
            Ok(n) => self.raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Moves whole chunks from `raw` into `text`.
    fn dechunk(&mut self) {
        while let Some(line_end) = find(&self.raw, b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&self.raw[..line_end]).trim(), 16).unwrap();
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            self.text.push_str(&String::from_utf8_lossy(&self.raw[line_end + 2..line_end + 2 + size]));
            self.raw.drain(..line_end + 2 + size + 2);
        }
    }

    /// The next `n` events other than `position` ones (waiting up to 10 s).
    fn events(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.len() < n {
            assert!(Instant::now() < deadline, "timed out with {out:?}; pending {:?}", self.text);
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut ev = Event { id: None, event: "message".into(), data: serde_json::Value::Null };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        ev.data = serde_json::from_str(v).unwrap();
                    }
                }
                if !block.starts_with(':') && ev.event != "position" {
                    out.push(ev);
                }
            }
            self.fill();
            self.dechunk();
        }
        out
    }

    /// True when no change event arrives for `ms`.
    fn quiet(&mut self, ms: u64) -> bool {
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            self.fill();
            self.dechunk();
        }
        !self.text.contains("event: postgres_changes")
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn ids(events: &[Event]) -> Vec<i64> {
    events.iter().map(|e| e.data["data"]["record"]["id"].as_i64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_resumes_after_a_crash_without_gap_or_duplicate() {
    let mut s = TestServer::start();
    let (_, service) = s.api_keys();
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, note text); ALTER PUBLICATION supabase_realtime ADD TABLE items",
    )
    .await
    .unwrap();
    let path = "/realtime/v1/sse?schema=public&table=items&event=INSERT";
    let auth = [("apikey", service.as_str())];
    let mut live = Stream::open(&s, path, &auth);
    assert_eq!(live.status, 200);
    c.batch_execute("INSERT INTO items VALUES (1, 'a'); INSERT INTO items VALUES (2, 'b')").await.unwrap();
    // Two statements of one simple query are one transaction: one commit, two changes.
    let first = live.events(2);
    assert_eq!(ids(&first), [1, 2]);
    let commit1 = first[1].id.clone().unwrap();
    assert_eq!(first[0].id.as_deref(), Some(format!("{commit1}.0").as_str()), "partial id, then the commit's");
    c.batch_execute("INSERT INTO items VALUES (3, 'c')").await.unwrap();
    let third = live.events(1);
    assert_eq!(ids(&third), [3]);
    let seen = third[0].id.clone().unwrap();
    drop(live);

    // Missed while away: one commit with two rows, one with one; then a crash.
    c.batch_execute("INSERT INTO items VALUES (4, 'd'), (5, 'e')").await.unwrap();
    c.batch_execute("INSERT INTO items VALUES (6, 'f')").await.unwrap();
    drop(c);
    s.kill9();
    s.spawn();
    let c = s.connect().await;

    let mut resumed = Stream::open(&s, path, &[("apikey", service.as_str()), ("Last-Event-ID", seen.as_str())]);
    assert_eq!(resumed.status, 200);
    let missed = resumed.events(3);
    assert_eq!(ids(&missed), [4, 5, 6], "what the client missed, in commit order");
    c.batch_execute("INSERT INTO items VALUES (7, 'g')").await.unwrap();
    assert_eq!(ids(&resumed.events(1)), [7], "then live changes");
    assert!(resumed.quiet(300), "nothing twice");
    let commit_45 = missed[1].id.clone().unwrap();
    let partial = missed[0].id.clone().unwrap();
    assert_eq!(partial, format!("{commit_45}.0"));
    drop(resumed);

    // Resuming in the middle of a commit gives the rest of it.
    let mut mid = Stream::open(&s, path, &[("apikey", service.as_str()), ("Last-Event-ID", partial.as_str())]);
    assert_eq!(ids(&mid.events(3)), [5, 6, 7]);
    drop(mid);

    // After a checkpoint the WAL no longer holds those commits: a clear refusal.
    c.batch_execute("CHECKPOINT").await.unwrap();
    let gone = Stream::open(&s, path, &[("apikey", service.as_str()), ("Last-Event-ID", seen.as_str())]);
    assert_eq!(gone.status, 410, "{}", gone.text);
    assert!(gone.text.contains("BKG201"), "{}", gone.text);

    // Bad requests say why.
    let bad = Stream::open(&s, "/realtime/v1/sse?table=items", &auth);
    assert_eq!(bad.status, 400, "{}", bad.text);
    let missing = Stream::open(&s, "/realtime/v1/sse?schema=public&table=nope", &auth);
    assert_eq!(missing.status, 404, "{}", missing.text);
    let no_key = Stream::open(&s, path, &[]);
    assert_eq!(no_key.status, 401);
    let bad_id = Stream::open(&s, path, &[("apikey", service.as_str()), ("Last-Event-ID", "x")]);
    assert_eq!(bad_id.status, 400);
}

/// `TYPE id` of a change event, with `(no old)` for an UPDATE sent without its old row.
fn summary(e: &Event) -> String {
    let d = &e.data["data"];
    let id = d["record"]["id"].as_i64().or_else(|| d["old_record"]["id"].as_i64()).unwrap_or(-1);
    let kind = d["type"].as_str().unwrap_or("?");
    let no_old = kind == "UPDATE" && d["old_record"].as_object().is_some_and(|o| o.is_empty());
    format!("{kind} {id}{}", if no_old { " (no old)" } else { "" })
}

/// The bypass matrix of tests/it/rls.rs, for the realtime door: each principal's stream carries
/// exactly the changes of the rows it may select, and nothing of what a row was before it came
/// into view.
#[tokio::test(flavor = "multi_thread")]
async fn bypass_matrix_over_realtime() {
    use crate::rls::{SECRET, token};
    use serde_json::json;
    let s = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET)]);
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE todos (id int PRIMARY KEY, owner text NOT NULL, task text NOT NULL);
             CREATE POLICY todos_owner ON todos TO authenticated USING (owner = auth.uid());
             GRANT SELECT ON todos TO anon, authenticated;
             ALTER PUBLICATION supabase_realtime ADD TABLE todos",
        )
        .await
        .unwrap();
    let principals = [
        ("anon", token(json!({"role": "anon"})), vec![]),
        ("A", token(json!({"role": "authenticated", "sub": "A"})), vec!["INSERT 1", "INSERT 2", "DELETE 2"]),
        ("B", token(json!({"role": "authenticated", "sub": "B"})), vec!["INSERT 3", "UPDATE 3", "UPDATE 1 (no old)"]),
        (
            "service",
            token(json!({"role": "service_role"})),
            vec!["INSERT 1", "INSERT 2", "INSERT 3", "UPDATE 3", "UPDATE 1", "DELETE 2"],
        ),
    ];
    let mut streams: Vec<(&str, Stream, Vec<&str>)> = principals
        .iter()
        .map(|(name, tok, want)| {
            let st = Stream::open(&s, "/realtime/v1/sse?schema=public&table=todos", &[("apikey", tok.as_str())]);
            assert_eq!(st.status, 200, "{name}: {}", st.text);
            (*name, st, want.clone())
        })
        .collect();
    admin.batch_execute("INSERT INTO todos VALUES (1, 'A', 'a1'), (2, 'A', 'a2'), (3, 'B', 'b1')").await.unwrap();
    admin.batch_execute("UPDATE todos SET task = 'b1!' WHERE id = 3").await.unwrap();
    // Moves row 1 from A to B: A must not see it go, B must not see what it was.
    admin.batch_execute("UPDATE todos SET owner = 'B', task = 'moved' WHERE id = 1").await.unwrap();
    admin.batch_execute("DELETE FROM todos WHERE id = 2").await.unwrap();
    for (name, st, want) in streams.iter_mut() {
        let got: Vec<String> = st.events(want.len()).iter().map(summary).collect();
        assert_eq!(got, *want, "{name}");
        assert!(st.quiet(300), "{name} received more");
    }
}

/// The connection limit holds when many connections arrive at once: the place is taken at
/// admission, not when the connection registers a moment later; a closed one frees its place.
#[tokio::test(flavor = "multi_thread")]
async fn the_connection_limit_holds_under_a_burst() {
    let s = TestServer::start_with(&[("BKG_DB_REALTIME_MAX_CONNECTIONS", "2")]);
    let (_, service) = s.api_keys();
    let c = s.connect().await;
    c.batch_execute("CREATE TABLE burst (id int PRIMARY KEY); ALTER PUBLICATION supabase_realtime ADD TABLE burst")
        .await
        .unwrap();
    let path = "/realtime/v1/sse?schema=public&table=burst";
    let streams: Vec<Stream> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            (0..12).map(|_| scope.spawn(|| Stream::open(&s, path, &[("apikey", service.as_str())]))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut statuses: Vec<u16> = streams.iter().map(|st| st.status).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503]);
    let mut open: Vec<Stream> = streams.into_iter().filter(|st| st.status == 200).collect();
    drop(open.pop());
    // The server notices the closed stream when it next writes to it (a keep-alive comment at
    // the latest); a change makes it write now.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        c.batch_execute("INSERT INTO burst SELECT coalesce(max(id), 0) + 1 FROM burst").await.unwrap();
        let again = Stream::open(&s, path, &[("apikey", service.as_str())]);
        if again.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "a closed stream's place was not freed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

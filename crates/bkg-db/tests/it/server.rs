//! A real server process on free loopback ports, stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "test-pass";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct TestServer {
    pub child: Option<Child>,
    pub pg_port: u16,
    pub http_port: u16,
    pub flight_port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra: Vec<(String, String)>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    pub fn start_with(env: &[(&str, &str)]) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = TestServer {
            child: None,
            pg_port: free_port(),
            http_port: free_port(),
            flight_port: free_port(),
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            extra: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_bkg-db"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--pg-listen")
            .arg(format!("127.0.0.1:{}", self.pg_port))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .arg("--flight-listen")
            .arg(format!("127.0.0.1:{}", self.flight_port))
            .env("BKG_DB_PASSWORD", PASSWORD)
            .env("BKG_DB_LOG", "warn")
            .envs(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bkg-db");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // A port picked free may be taken by another test's server before this one binds
            // it: then this server exits (it cannot listen) while the port answers. Start again
            // on other ports rather than talk to someone else's server.
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.pg_port = free_port();
                self.http_port = free_port();
                self.flight_port = free_port();
                return self.spawn();
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.pg_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.http_port)).is_ok()
            {
                std::thread::sleep(Duration::from_millis(30));
                if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                    continue;
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("bkg-db did not start listening");
    }

    pub fn conn_string(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=postgres", self.pg_port)
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&self.conn_string(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("server did not stop after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One HTTP/1.1 request; returns the status, the headers (lower-cased names) and the body.
    pub fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        s.write_all(req.as_bytes()).unwrap();
        // A server may answer (413) before reading a big body; the write then fails.
        let _ = s.write_all(body);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let buf = String::from_utf8_lossy(&buf).into_owned();
        let status = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (head, body) =
            buf.split_once("\r\n\r\n").map(|(h, b)| (h.to_lowercase(), b.to_string())).unwrap_or_default();
        (status, head, body)
    }

    /// The API keys the server generated on first start: (anon, service_role).
    pub fn api_keys(&self) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(b) = std::fs::read(self.dir.join("auth/keys.json")) {
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                return (v["anon_key"].as_str().unwrap().into(), v["service_key"].as_str().unwrap().into());
            }
            assert!(Instant::now() < deadline, "no keys.json");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        let status = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }
}

impl TestServer {
    /// Waits until no snapshot is pinned (`bkg_active_snapshots 0`), at most 10 s.
    pub fn wait_unpinned(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = self.http_get("/metrics");
            if body.lines().find_map(|l| l.strip_prefix("bkg_active_snapshots ")).map(str::trim) == Some("0") {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: a snapshot stays pinned:\n{body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

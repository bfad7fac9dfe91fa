//! pgbench (Debian postgresql) against a started server: initialisation, then TPC-B-like runs in
//! simple and prepared mode and a select-only run. Serialization failures are expected under
//! snapshot isolation (retried with --max-tries); any other error fails the test.

use std::process::Command;

use crate::server::{PASSWORD, TestServer};

fn pgbench(server: &TestServer, args: &[&str]) -> (bool, String) {
    let out = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(server.pg_port.to_string())
        .args(args)
        .arg("postgres")
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("pgbench is installed (make test-deps installs postgresql)");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn processed(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn pgbench_initialises_and_runs() {
    let server = TestServer::start();
    let (ok, out) = pgbench(&server, &["-i", "-s", "1"]);
    assert!(ok, "pgbench -i failed:\n{out}");
    for mode in [&["-M", "simple"][..], &["-M", "prepared"][..], &["-S", "-M", "prepared"][..]] {
        let mut args = vec!["-T", "10", "-c", "4", "-j", "2", "--max-tries", "100", "--failures-detailed"];
        args.extend_from_slice(mode);
        let (ok, out) = pgbench(&server, &args);
        assert!(ok, "pgbench {mode:?} failed:\n{out}");
        assert!(!out.contains("aborted"), "pgbench {mode:?} had aborted clients:\n{out}");
        assert!(processed(&out) > 0, "pgbench {mode:?} processed nothing:\n{out}");
        eprintln!(
            "pgbench {mode:?}: {}",
            out.lines()
                .filter(|l| l.starts_with("tps") || l.contains("failed") || l.contains("processed"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    // The TPC-B invariant: branch, teller and account balances moved by the same total (history is
    // truncated by every pgbench run, so it cannot take part).
    let check = "SELECT (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(abalance) FROM pgbench_accounts) \
                 AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT sum(bbalance) FROM pgbench_branches)";
    let (ok, out, err) = crate::psql::psql(&server, &["-c", check], "");
    assert!(ok, "{err}");
    let (_, sums, _) = crate::psql::psql(
        &server,
        &[
            "-c",
            "SELECT (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers)",
        ],
        "",
    );
    assert_eq!(out.trim(), "t", "balances: {sums} {err}");
}

//! Crash test: a separate process commits through the embedded API and is killed with SIGKILL at
//! random moments; after each kill the database must reopen with every acknowledged transaction
//! whole and no unacknowledged one partly visible. `BKG_CRASH_CYCLES` sets the number of cycles
//! (default 200).

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use bkg_kernel::testutil::{kv_contents, kv_get, table_id};
use bkg_kernel::{Database, IsolationLevel, Options};
use rand::{Rng, SeedableRng};

#[test]
fn acknowledged_commits_survive_sigkill() {
    let cycles: usize = std::env::var("BKG_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("BKG_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(7),
    );
    let mut max_acked = 0i64;
    let mut checked_txns = 0i64;
    for cycle in 0..cycles {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bkg-crash-writer"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => acked.push(l.trim().parse::<i64>().expect("number")),
                    Err(_) => break,
                }
            }
            acked
        });
        let wait = if cycle == 0 { 200 } else { rng.random_range(2..60) };
        std::thread::sleep(Duration::from_millis(wait));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        if let Some(&last) = acked.last() {
            max_acked = max_acked.max(last);
        }
        let (db, _) =
            Database::open(Options::new(dir.path())).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        let t = db.begin(IsolationLevel::RepeatableRead);
        let (Some(a), Some(b)) = (table_id(&t, "a"), table_id(&t, "b")) else {
            assert_eq!(max_acked, 0, "cycle {cycle}: tables missing after acknowledged commits");
            continue;
        };
        let counter = kv_get(&t, b, 0).map(|(_, v)| v).unwrap_or(0);
        assert!(counter >= max_acked, "cycle {cycle}: acknowledged txn {max_acked} lost (counter {counter})");
        let rows = kv_contents(&t, a);
        let expected: Vec<(i64, i64)> = (1..=counter).flat_map(|n| (0..3).map(move |i| (n * 10 + i, n))).collect();
        assert_eq!(rows.len(), expected.len(), "cycle {cycle}: a partly visible transaction or a lost one");
        assert_eq!(rows, expected, "cycle {cycle}");
        checked_txns = counter;
        drop(t);
        db.close();
    }
    assert!(checked_txns > 0, "the writer never committed anything");
    eprintln!("{cycles} kill -9 cycles; {checked_txns} transactions verified; last acknowledged {max_acked}");
}

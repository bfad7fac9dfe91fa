//! Writes transactions forever through the embedded API and prints the number of each one as
//! soon as its commit is acknowledged. The crash test kills it with SIGKILL at random moments and
//! checks that every acknowledged transaction survived whole and nothing else is partly there.
//!
//! Transaction n inserts rows n*10, n*10+1, n*10+2 (v = n) into table `a` and sets the single
//! row of table `b` to n. Every 40 transactions it takes a checkpoint.

use std::io::Write;

use bkg_kernel::testutil::{create_kv_table, kv_get, kv_row, table_id};
use bkg_kernel::{Database, IsolationLevel, OnConflict, Options};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: bkg-crash-writer DIR");
    let (db, _) = Database::open(Options::new(&dir)).expect("open");
    let rr = IsolationLevel::RepeatableRead;
    let (a, b) = {
        let mut t = db.begin(rr);
        match (table_id(&t, "a"), table_id(&t, "b")) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                let a = create_kv_table(&mut t, "a").expect("create a");
                let b = create_kv_table(&mut t, "b").expect("create b");
                t.insert(b, vec![kv_row(0, 0, "counter")], OnConflict::Error).expect("counter");
                t.commit_blocking().expect("setup");
                (a, b)
            }
        }
    };
    let mut out = std::io::stdout().lock();
    loop {
        let mut t = db.begin(rr);
        let (rowid, n) = kv_get(&t, b, 0).expect("counter row");
        let n = n + 1;
        let rows = (0..3).map(|i| kv_row(n * 10 + i, n, "crash")).collect();
        t.insert(a, rows, OnConflict::Error).expect("insert");
        t.update(b, vec![(rowid, kv_row(0, n, "counter"))]).expect("update");
        t.commit_blocking().expect("commit");
        writeln!(out, "{n}").expect("stdout");
        out.flush().expect("stdout");
        if n % 40 == 0 {
            db.checkpoint().expect("checkpoint");
        }
    }
}

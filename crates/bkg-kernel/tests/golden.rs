//! Files written by an earlier build stay readable.
//!
//! `testdata/golden/v1/data/` is a data directory as the kernel wrote it with WAL segment format 1,
//! MANIFEST format 1 and commit records of formats 2 (rows) and 3 (Arrow columns): a checkpoint
//! (Parquet snapshot and MANIFEST) of tables of every column type, then a WAL tail after it with
//! inserts, bulk (columnar) inserts, updates, deletes and a table created after the checkpoint,
//! left as a crash leaves it (no clean close). `expected.txt` is every row the writing build saw,
//! table by table, as the `Debug` text of the kernel's values (a change to that text means
//! rewriting `expected.txt` from the data, never the data). The test opens a copy with today's
//! reader, compares, then checkpoints what it read and reads it back.
//!
//! When a format version changes, the new writer gets a new directory (`v2/`, …) and the old
//! ones stay, so every reader is checked against every format it must still read:
//!
//! ```text
//! BKG_GOLDEN_WRITE=v1 cargo nextest run -p bkg-kernel --test golden
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bkg_kernel::catalog::{ColumnDef, IndexDef, TableDef};
use bkg_kernel::{DataType as D, Database, IsolationLevel, OnConflict, Options, Transaction, Value as V};

const RR: IsolationLevel = IsolationLevel::RepeatableRead;

fn golden_dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/golden").join(version)
}

/// One column of every type the kernel stores, with a value of it.
fn typed_columns() -> Vec<(&'static str, D, V)> {
    let text = |s: &str| V::Text(Arc::from(s));
    vec![
        ("b", D::Bool, V::Bool(true)),
        ("i2", D::Int16, V::Int16(-32768)),
        ("i4", D::Int32, V::Int32(2_147_483_647)),
        ("i8", D::Int64, V::Int64(i64::MIN)),
        ("f4", D::Float32, V::Float32(1.5e-7)),
        ("f8", D::Float64, V::Float64(-0.1)),
        ("n", D::Numeric { precision: 12, scale: 3 }, V::Decimal(-123_456_789)),
        ("t", D::Text, text("héllo, wörld \u{1F600}")),
        ("vc", D::Varchar(Some(8)), text("varchar")),
        ("c", D::Char(4), text("ab  ")),
        ("by", D::Bytea, V::Bytes(Arc::from(&b"\x00\xffbytes\\"[..]))),
        ("d", D::Date, V::Date(-719_162)),
        ("tm", D::Time, V::Time(86_399_999_999)),
        ("ts", D::Timestamp, V::Timestamp(1_700_000_000_123_456)),
        ("tz", D::TimestampTz, V::Timestamp(-1)),
        ("iv", D::Interval, V::Interval { months: 14, days: -3, nanos: 4_000_000_123 }),
        ("u", D::Uuid, text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        ("j", D::Json, text(r#"{"a": [1, 2.5, null]}"#)),
        ("jb", D::Jsonb, text(r#"{"k": "v"}"#)),
        ("ai", D::Array(Box::new(D::Int32)), V::Array(Arc::from(vec![V::Int32(1), V::Null, V::Int32(3)]))),
        ("at", D::Array(Box::new(D::Text)), V::Array(Arc::from(vec![text("x"), text("")]))),
    ]
}

fn table(name: &str, columns: Vec<(String, D)>) -> TableDef {
    TableDef {
        id: 0,
        schema: "public".into(),
        name: name.into(),
        columns: columns
            .into_iter()
            .enumerate()
            .map(|(i, (name, data_type))| ColumnDef {
                name,
                data_type,
                nullable: i > 0,
                default: None,
                dropped: false,
                missing: V::Null,
            })
            .collect(),
        indexes: vec![IndexDef { id: 0, name: format!("{name}_pkey"), columns: vec![0], unique: true, primary: true }],
        foreign_keys: vec![],
        owner: bkg_kernel::BOOTSTRAP_SUPERUSER,
        acl: vec![],
        row_security: false,
        force_row_security: false,
        policies: vec![],
        checks: vec![],
    }
}

fn create(t: &mut Transaction, def: TableDef) -> u64 {
    t.catalog_mut().create_table(def, false).expect("create").expect("a new table")
}

/// `id`, then every typed column.
fn typed_table(name: &str) -> TableDef {
    let mut cols = vec![("id".to_string(), D::Int64)];
    cols.extend(typed_columns().into_iter().map(|(n, d, _)| (n.to_string(), d)));
    table(name, cols)
}

/// Row `id` of a typed table: every value, or NULL in the columns `id` picks.
fn typed_row(id: i64) -> Vec<V> {
    let mut row = vec![V::Int64(id)];
    row.extend(
        typed_columns()
            .into_iter()
            .enumerate()
            .map(|(i, (_, _, v))| if (id + i as i64) % 5 == 0 { V::Null } else { v }),
    );
    row
}

fn columns_of(def: &TableDef, rows: &[Vec<V>]) -> Vec<Option<arrow::array::ArrayRef>> {
    def.columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Some(bkg_kernel::arrow_conv::column_from_values(&c.data_type, rows.iter().map(|r| &r[i])).unwrap())
        })
        .collect()
}

/// Row ids of the rows whose first column (`id`) satisfies `pick`.
fn rowids(t: &Transaction, table: u64, pick: impl Fn(i64) -> bool) -> Vec<u64> {
    let mut out = Vec::new();
    t.scan(table, |r, row| {
        if let V::Int64(id) = row[0]
            && pick(id)
        {
            out.push(r);
        }
    });
    out
}

/// Every table and every row the database shows, as text, in a stable order.
fn dump(db: &Database) -> String {
    let t = db.begin(RR);
    let cat = t.catalog().clone();
    let mut tables: Vec<_> = cat.tables.values().filter(|d| d.schema == "public").collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for def in tables {
        let cols: Vec<String> = def.columns.iter().map(|c| format!("{} {:?}", c.name, c.data_type)).collect();
        out.push_str(&format!("table {} ({})\n", def.name, cols.join(", ")));
        let mut rows = Vec::new();
        t.scan(def.id, |_, row| rows.push(format!("{row:?}")));
        rows.sort();
        for r in rows {
            out.push_str(&r);
            out.push('\n');
        }
    }
    out
}

/// Writes `testdata/golden/<version>/` (run by hand when a format version changes).
fn write_golden(version: &str) {
    let dir = golden_dir(version);
    let data = dir.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data).unwrap();
    }
    std::fs::create_dir_all(&data).unwrap();
    let db = Database::open(Options::new(&data)).expect("open").0;

    // Before the checkpoint: rows (record format 2) and columns (format 3), an update, a delete.
    let mut t = db.begin(RR);
    let rows_table = create(&mut t, typed_table("typed_rows"));
    let bulk_table = create(&mut t, typed_table("typed_bulk"));
    t.commit_blocking().unwrap();
    let mut t = db.begin(RR);
    t.insert(rows_table, (1..=20).map(typed_row).collect(), OnConflict::Error).unwrap();
    t.commit_blocking().unwrap();
    let mut t = db.begin(RR);
    let def = t.catalog().table(bulk_table).unwrap().clone();
    let bulk: Vec<Vec<V>> = (1..=40).map(typed_row).collect();
    t.insert_columns(bulk_table, columns_of(&def, &bulk)).unwrap();
    t.commit_blocking().unwrap();
    let mut t = db.begin(RR);
    let gone = rowids(&t, rows_table, |id| id % 4 == 0);
    t.delete(rows_table, &gone).unwrap();
    let moved: Vec<(u64, Vec<V>)> =
        rowids(&t, bulk_table, |id| id % 7 == 0).into_iter().map(|r| (r, typed_row(10_000 + r as i64))).collect();
    t.update(bulk_table, moved).unwrap();
    t.commit_blocking().unwrap();
    db.checkpoint().unwrap();

    // The WAL tail: more of each kind, and a table created after the checkpoint.
    let mut t = db.begin(RR);
    t.insert(rows_table, (21..=30).map(typed_row).collect(), OnConflict::Error).unwrap();
    let late = create(&mut t, table("late", vec![("id".into(), D::Int64), ("note".into(), D::Text)]));
    t.insert(late, vec![vec![V::Int64(1), V::Text(Arc::from("after the checkpoint"))]], OnConflict::Error).unwrap();
    t.commit_blocking().unwrap();
    let mut t = db.begin(RR);
    let bulk: Vec<Vec<V>> = (41..=80).map(typed_row).collect();
    t.insert_columns(bulk_table, columns_of(&def, &bulk)).unwrap();
    t.commit_blocking().unwrap();
    let mut t = db.begin(RR);
    let gone = rowids(&t, bulk_table, |id| id % 3 == 0);
    t.delete(bulk_table, &gone).unwrap();
    let moved: Vec<(u64, Vec<V>)> =
        rowids(&t, rows_table, |id| id % 5 == 1).into_iter().map(|r| (r, typed_row(20_000 + r as i64))).collect();
    t.update(rows_table, moved).unwrap();
    t.commit_blocking().unwrap();

    std::fs::write(dir.join("expected.txt"), dump(&db)).unwrap();
    // No clean close: the tail stays in the WAL, as after a crash.
    drop(db);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn todays_reader_reads_every_golden_data_directory() {
    if let Ok(version) = std::env::var("BKG_GOLDEN_WRITE") {
        write_golden(&version);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/golden");
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    versions.sort();
    assert!(!versions.is_empty(), "no golden data directories in {}", root.display());
    for v in versions {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&v.join("data"), tmp.path());
        let db = Database::open(Options::new(tmp.path())).unwrap_or_else(|e| panic!("{}: {e}", v.display())).0;
        let expected = std::fs::read_to_string(v.join("expected.txt")).unwrap();
        let got = dump(&db);
        assert!(got == expected, "{}: today's reader sees other rows than the writer did", v.display());
        // And it writes on: a checkpoint of what it read, read back once more.
        db.checkpoint().unwrap();
        db.close();
        drop(db);
        let db = Database::open(Options::new(tmp.path())).unwrap().0;
        assert!(dump(&db) == expected, "{}: after a new checkpoint", v.display());
    }
}

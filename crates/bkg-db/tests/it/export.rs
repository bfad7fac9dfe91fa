//! Export: COPY … TO '<path>' and POST /export write Parquet (ZSTD) or CSV under the export
//! directory, read one snapshot, and refuse what they may not do. (S3 targets are tested against
//! a real S3-compatible server in tests/clients/python/test_export.py.)

use std::fs::File;

use datafusion::arrow::array::{Array, Int32Array, StringArray};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;

use crate::server::TestServer;

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no sqlstate: {e}"))
}

#[tokio::test]
async fn copy_to_files_writes_parquet_and_csv_inside_the_export_directory() {
    let server = TestServer::start_with(&[("BKG_DB_RLS_DEFAULT", "off")]);
    let pg = server.connect().await;
    pg.batch_execute(
        "CREATE TABLE src (id int PRIMARY KEY, name text, amount numeric(10,2));
         INSERT INTO src SELECT x, CASE WHEN x % 10 = 0 THEN NULL ELSE 'n' || x END, x / 4.0
           FROM generate_series(1, 20000) AS g(x);",
    )
    .await
    .unwrap();
    let rows = pg.execute("COPY (SELECT id, name FROM src WHERE id % 2 = 0 ORDER BY id) TO 'dir/even.parquet'", &[]);
    assert_eq!(rows.await.unwrap(), 10_000);
    let path = server.dir.join("exports/dir/even.parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
    assert_eq!(reader.metadata().row_group(0).column(0).compression(), Compression::ZSTD(Default::default()));
    let mut ids = Vec::new();
    let mut nulls = 0;
    for b in reader.build().unwrap() {
        let b = b.unwrap();
        let id = b.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
        let name = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        ids.extend(id.values().iter().copied());
        nulls += name.null_count();
    }
    assert_eq!(ids, (1..=10_000).map(|i| i * 2).collect::<Vec<i32>>());
    assert_eq!(nulls, 2_000);
    // A table, as CSV with a header (chosen by the file name).
    let n = pg.execute("COPY src TO 'src.csv' WITH (HEADER true)", &[]).await.unwrap();
    assert_eq!(n, 20_000);
    let csv = std::fs::read_to_string(server.dir.join("exports/src.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("id,name,amount"));
    let rest: std::collections::BTreeSet<&str> = lines.collect();
    assert!(rest.contains("1,n1,0.25") && rest.contains("10,,2.50") && rest.len() == 20_000);
    assert_eq!(csv.lines().count(), 20_001);
    // CSV's options are COPY's: another delimiter and NULL text.
    pg.batch_execute("COPY (SELECT id, name FROM src WHERE id IN (9, 10) ORDER BY id) TO 'semi.csv' WITH (DELIMITER ';', NULL 'none')")
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(server.dir.join("exports/semi.csv")).unwrap(), "9;n9\n10;none\n");
    // Paths that leave the export directory, other schemes, unlisted S3 prefixes.
    for (target, state) in [
        ("../escape.parquet", "42501"),
        ("dir/../../escape.parquet", "42501"),
        ("/etc/bkg.parquet", "42501"),
        ("file:///tmp/bkg.parquet", "42501"),
        ("s3://bucket/key.parquet", "42501"),
        ("http://example.com/x", "0A000"),
        ("x.parquet' WITH (FORMAT orc", "42601"),
    ] {
        let e = pg.batch_execute(&format!("COPY src TO '{target}'")).await.unwrap_err();
        assert_eq!(code(&e), state, "{target}");
    }
    assert_eq!(code(&pg.batch_execute("COPY src TO 'x.orc' WITH (FORMAT orc)").await.unwrap_err()), "22023");
    // A symbolic link inside the directory may not lead out of it.
    std::os::unix::fs::symlink("/tmp", server.dir.join("exports/out")).unwrap();
    assert_eq!(code(&pg.batch_execute("COPY src TO 'out/x.parquet'").await.unwrap_err()), "42501");
    // A failing query writes nothing.
    let e = pg.batch_execute("COPY (SELECT 1 / (id - 500) FROM src) TO 'fails.parquet'").await.unwrap_err();
    assert_eq!(code(&e), "22012");
    assert!(!server.dir.join("exports/fails.parquet").exists());
    // Roles other than superusers may not export, whatever they may read.
    pg.batch_execute("CREATE USER reader PASSWORD 'reader-pass'; GRANT SELECT ON src TO reader").await.unwrap();
    let dsn = format!("host=127.0.0.1 port={} user=reader password=reader-pass dbname=postgres", server.pg_port);
    let (reader, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(reader.query("SELECT id FROM src LIMIT 1", &[]).await.unwrap().len(), 1);
    assert_eq!(code(&reader.batch_execute("COPY src TO 'mine.parquet'").await.unwrap_err()), "42501");
    // Inside a transaction an export reads the transaction's snapshot, uncommitted rows included.
    pg.batch_execute(
        "BEGIN; INSERT INTO src VALUES (0, 'zero', 0); COPY (SELECT * FROM src) TO 'txn.parquet'; ROLLBACK",
    )
    .await
    .unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(server.dir.join("exports/txn.parquet")).unwrap());
    assert_eq!(reader.unwrap().metadata().file_metadata().num_rows(), 20_001);
}

#[tokio::test]
async fn post_export_needs_the_service_role_and_writes_the_file() {
    let server = TestServer::start_with(&[("BKG_DB_RLS_DEFAULT", "off"), ("BKG_DB_REST_RATE_PER_S", "0")]);
    let pg = server.connect().await;
    pg.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    let (anon, service) = server.api_keys();
    let post = |key: &str, body: serde_json::Value| {
        server.http(
            "POST",
            "/export",
            &[("apikey", key), ("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    };
    let (st, _, body) = post(&service, serde_json::json!({"table": "items", "url": "items.parquet"}));
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rows"], 2);
    assert_eq!(v["format"], "parquet");
    assert!(server.dir.join("exports/items.parquet").exists());
    let (st, _, body) =
        post(&service, serde_json::json!({"query": "SELECT v FROM items ORDER BY id", "url": "v.csv", "header": true}));
    assert_eq!(st, 200, "{body}");
    assert_eq!(std::fs::read_to_string(server.dir.join("exports/v.csv")).unwrap(), "v\na\nb\n");
    // The anon key may not export; bad bodies and targets are clear errors.
    let (st, _, body) = post(&anon, serde_json::json!({"table": "items", "url": "x.parquet"}));
    assert!(st == 401 || st == 403, "{st} {body}");
    assert!(body.contains("42501"), "{body}");
    let (st, _, body) = post(&service, serde_json::json!({"query": "DELETE FROM items", "url": "x.parquet"}));
    assert_eq!(st, 400, "{body}");
    let (st, _, body) = post(&service, serde_json::json!({"table": "items", "url": "../x.parquet"}));
    assert_eq!(st, 403, "{body}");
    let (st, _, body) =
        post(&service, serde_json::json!({"table": "items\"; DROP TABLE items; --", "url": "y.parquet"}));
    assert_eq!(st, 404, "{body}");
    let (st, _, body) = post(&service, serde_json::json!({"url": "x.parquet", "nope": 1}));
    assert_eq!(st, 400, "{body}");
    assert_eq!(pg.query("SELECT * FROM items", &[]).await.unwrap().len(), 2);
}

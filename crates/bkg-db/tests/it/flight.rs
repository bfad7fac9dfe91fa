//! Arrow Flight SQL with the Rust `FlightSqlServiceClient`: password handshake, queries,
//! prepared statements, updates, bulk ingest, metadata, transactions, hostile input, and
//! row-level security with JWT bearers.

use std::sync::Arc;

use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, CommandStatementIngest, EndTransaction, SqlInfo,
    TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};
use arrow_flight::{FlightInfo, Ticket};
use datafusion::arrow::array::{Array, Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

use crate::rls::{SECRET, token};
use crate::server::{PASSWORD, TestServer};

async fn client(server: &TestServer) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", server.flight_port))
        .unwrap()
        .connect()
        .await
        .expect("flight connects");
    FlightSqlServiceClient::new(channel)
}

async fn logged_in(server: &TestServer) -> FlightSqlServiceClient<Channel> {
    let mut c = client(server).await;
    c.handshake("postgres", PASSWORD).await.expect("handshake");
    assert!(c.token().is_some(), "the handshake hands out a bearer token");
    c
}

async fn fetch(c: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Result<Vec<RecordBatch>, FlightError> {
    let mut out = Vec::new();
    for ep in info.endpoint {
        let ticket = ep.ticket.expect("an endpoint has a ticket");
        out.extend(c.do_get(ticket).await?.try_collect::<Vec<_>>().await?);
    }
    Ok(out)
}

async fn query(c: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Result<Vec<RecordBatch>, FlightError> {
    let info = c.execute(sql.to_string(), None).await?;
    fetch(c, info).await
}

fn code(e: &FlightError) -> (Code, String) {
    match e {
        FlightError::Tonic(s) => {
            let state = s.metadata().get("x-sqlstate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            (s.code(), state)
        }
        other => panic!("not a gRPC status: {other:?}"),
    }
}

fn ints(batches: &[RecordBatch], col: usize) -> Vec<i64> {
    let mut out = Vec::new();
    for b in batches {
        let c = datafusion::arrow::compute::cast(b.column(col), &DataType::Int64).unwrap();
        let c = c.as_any().downcast_ref::<Int64Array>().unwrap();
        out.extend((0..c.len()).map(|i| c.value(i)));
    }
    out
}

fn texts(batches: &[RecordBatch], col: usize) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let c = datafusion::arrow::compute::cast(b.column(col), &DataType::Utf8).unwrap();
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..c.len()).map(|i| (!c.is_null(i)).then(|| c.value(i).to_string())));
    }
    out
}

fn ingest_cmd(table: &str, if_not_exist: TableNotExistOption, if_exists: TableExistsOption) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: if_not_exist as i32,
            if_exists: if_exists as i32,
        }),
        table: table.into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    }
}

fn people(from: i32, n: i32) -> RecordBatch {
    let schema =
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false), Field::new("name", DataType::Utf8, true)]));
    let ids: Vec<i32> = (from..from + n).collect();
    let names: Vec<Option<String>> = ids.iter().map(|i| (i % 7 != 0).then(|| format!("p{i}"))).collect();
    RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(ids)), Arc::new(StringArray::from(names))]).unwrap()
}

#[tokio::test]
async fn flight_sql_queries_prepared_statements_ingest_and_metadata() {
    let server = TestServer::start_with(&[("BKG_DB_RLS_DEFAULT", "off")]);
    let mut c = logged_in(&server).await;
    assert_eq!(
        c.execute_update("CREATE TABLE t (id int PRIMARY KEY, v text, n numeric(10,2))".into(), None).await.unwrap(),
        0
    );
    let n = c.execute_update("INSERT INTO t VALUES (1, 'a', 1.50), (2, 'b', NULL), (3, NULL, 3.25)".into(), None);
    assert_eq!(n.await.unwrap(), 3);
    let rows = query(&mut c, "SELECT id, v FROM t ORDER BY id").await.unwrap();
    assert_eq!(ints(&rows, 0), vec![1, 2, 3]);
    assert_eq!(texts(&rows, 1), vec![Some("a".into()), Some("b".into()), None]);
    assert_eq!(rows[0].schema().field(0).name(), "id");
    // What pgwire sees is what Flight wrote.
    let pg = server.connect().await;
    assert_eq!(pg.query("SELECT * FROM t", &[]).await.unwrap().len(), 3);

    // A large result streams in several batches, and comes back complete.
    c.execute_update("INSERT INTO t SELECT x, 'r' || x, x FROM generate_series(10, 50009) AS g(x)".into(), None)
        .await
        .unwrap();
    let rows = query(&mut c, "SELECT id FROM t WHERE id >= 10 ORDER BY id").await.unwrap();
    assert!(rows.len() > 1, "{} batches", rows.len());
    assert_eq!(ints(&rows, 0), (10..50010).collect::<Vec<_>>());

    // Prepared query with `?` parameters, run twice with different bindings.
    let mut p = c.prepare("SELECT v FROM t WHERE id = ? OR id = ? ORDER BY id".into(), None).await.unwrap();
    assert_eq!(p.parameter_schema().unwrap().fields().len(), 2);
    assert_eq!(p.dataset_schema().unwrap().field(0).name(), "v");
    let params = |a: i64, b: i64| {
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, false),
            Field::new("$2", DataType::Int64, false),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![a])), Arc::new(Int64Array::from(vec![b]))])
            .unwrap()
    };
    p.set_parameters(params(1, 3)).unwrap();
    let info = p.execute().await.unwrap();
    assert_eq!(texts(&fetch(&mut c, info).await.unwrap(), 0), vec![Some("a".into()), None]);
    p.set_parameters(params(2, 2)).unwrap();
    let info = p.execute().await.unwrap();
    assert_eq!(texts(&fetch(&mut c, info).await.unwrap(), 0), vec![Some("b".into())]);
    p.close().await.unwrap();

    // Prepared update, once per parameter row.
    let mut u = c.prepare("UPDATE t SET v = $2 WHERE id = $1".into(), None).await.unwrap();
    let schema =
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Int32, false), Field::new("$2", DataType::Utf8, true)]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Int32Array::from(vec![1, 2, -5])), Arc::new(StringArray::from(vec!["x", "it's", "none"]))],
    )
    .unwrap();
    u.set_parameters(batch).unwrap();
    assert_eq!(u.execute_update().await.unwrap(), 2);
    let rows = query(&mut c, "SELECT v FROM t WHERE id <= 2 ORDER BY id").await.unwrap();
    assert_eq!(texts(&rows, 0), vec![Some("x".into()), Some("it's".into())]);

    // Bulk ingest: a new table from the stream's schema, in one transaction.
    let stream = futures::stream::iter((0..10).map(|i| Ok(people(i * 10_000, 10_000))));
    let cmd = ingest_cmd("people", TableNotExistOption::Create, TableExistsOption::Fail);
    assert_eq!(c.execute_ingest(cmd, stream).await.unwrap(), 100_000);
    let rows = query(&mut c, "SELECT count(*), count(name), min(id), max(id) FROM people").await.unwrap();
    assert_eq!(ints(&rows, 0), vec![100_000]);
    assert_eq!(ints(&rows, 1), vec![100_000 - 14_286]);
    assert_eq!((ints(&rows, 2), ints(&rows, 3)), (vec![0], vec![99_999]));
    // Append to it; a duplicate key fails the whole ingest and leaves nothing behind.
    pg.batch_execute("ALTER TABLE people ADD PRIMARY KEY (id)").await.unwrap();
    let cmd = ingest_cmd("people", TableNotExistOption::Fail, TableExistsOption::Append);
    let stream = futures::stream::iter(vec![Ok(people(100_000, 5)), Ok(people(99_999, 2))]);
    let e = c.execute_ingest(cmd.clone(), stream).await.unwrap_err();
    assert_eq!(code(&e), (Code::AlreadyExists, "23505".into()));
    let stream = futures::stream::iter(vec![Ok(people(100_000, 5))]);
    assert_eq!(c.execute_ingest(cmd, stream).await.unwrap(), 5);
    assert_eq!(ints(&query(&mut c, "SELECT count(*) FROM people").await.unwrap(), 0), vec![100_005]);
    // Create mode on an existing table, and append to a missing one, are refused.
    let stream = futures::stream::iter(vec![Ok(people(0, 1))]);
    let e = c.execute_ingest(ingest_cmd("people", TableNotExistOption::Create, TableExistsOption::Fail), stream);
    assert_eq!(code(&e.await.unwrap_err()).1, "42P07");
    let stream = futures::stream::iter(vec![Ok(people(0, 1))]);
    let e = c.execute_ingest(ingest_cmd("nope", TableNotExistOption::Fail, TableExistsOption::Append), stream);
    assert_eq!(code(&e.await.unwrap_err()).1, "42P01");

    // Metadata.
    let info = c.get_catalogs().await.unwrap();
    assert_eq!(texts(&fetch(&mut c, info).await.unwrap(), 0), vec![Some("postgres".into())]);
    let info = c.get_db_schemas(CommandGetDbSchemas { catalog: None, db_schema_filter_pattern: Some("pub%".into()) });
    let info = info.await.unwrap();
    assert_eq!(texts(&fetch(&mut c, info).await.unwrap(), 1), vec![Some("public".into())]);
    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("peo%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut c, info).await.unwrap();
    assert_eq!(texts(&tables, 2), vec![Some("people".into())]);
    assert_eq!(texts(&tables, 3), vec![Some("TABLE".into())]);
    let info =
        c.get_primary_keys(CommandGetPrimaryKeys { catalog: None, db_schema: None, table: "t".into() }).await.unwrap();
    let pks = fetch(&mut c, info).await.unwrap();
    assert_eq!(texts(&pks, 3), vec![Some("id".into())]);
    assert_eq!(texts(&pks, 4), vec![Some("t_pkey".into())]);
    let info = c.get_table_types().await.unwrap();
    assert_eq!(texts(&fetch(&mut c, info).await.unwrap(), 0), vec![Some("TABLE".into()), Some("VIEW".into())]);
    let info = c.get_sql_info(vec![SqlInfo::FlightSqlServerName]).await.unwrap();
    assert_eq!(fetch(&mut c, info).await.unwrap()[0].num_rows(), 1);
    let info = c.get_xdbc_type_info(Default::default()).await.unwrap();
    assert!(fetch(&mut c, info).await.unwrap()[0].num_rows() >= 10);

    // Transactions: invisible to others until commit; a rollback leaves nothing.
    let txn = c.begin_transaction().await.unwrap();
    c.execute_update("INSERT INTO t VALUES (60000, 'in txn', 0)".into(), Some(txn.clone())).await.unwrap();
    let info = c.execute("SELECT count(*) FROM t WHERE id = 60000".into(), Some(txn.clone())).await.unwrap();
    assert_eq!(ints(&fetch(&mut c, info).await.unwrap(), 0), vec![1]);
    assert_eq!(ints(&query(&mut c, "SELECT count(*) FROM t WHERE id = 60000").await.unwrap(), 0), vec![0]);
    c.end_transaction(txn.clone(), EndTransaction::Rollback).await.unwrap();
    assert_eq!(ints(&query(&mut c, "SELECT count(*) FROM t WHERE id = 60000").await.unwrap(), 0), vec![0]);
    let e = c.execute_update("SELECT 1".into(), Some(txn)).await.unwrap_err();
    assert_eq!(code(&e).1, "25P01");
    let txn = c.begin_transaction().await.unwrap();
    c.execute_update("INSERT INTO t VALUES (60001, 'kept', 0)".into(), Some(txn.clone())).await.unwrap();
    // Savepoints (the BeginSavepoint/EndSavepoint actions): rolled back, then released.
    let sp = begin_savepoint(&mut c, &txn, "a").await.unwrap();
    c.execute_update("INSERT INTO t VALUES (60002, 'undone', 0)".into(), Some(txn.clone())).await.unwrap();
    let e = c.execute_update("INSERT INTO t VALUES (60001, 'dup', 0)".into(), Some(txn.clone())).await.unwrap_err();
    assert_eq!(code(&e).1, "23505");
    end_savepoint(&mut c, &sp, 2).await.unwrap();
    let sp = begin_savepoint(&mut c, &txn, "b").await.unwrap();
    c.execute_update("INSERT INTO t VALUES (60003, 'kept too', 0)".into(), Some(txn.clone())).await.unwrap();
    end_savepoint(&mut c, &sp, 1).await.unwrap();
    let e = end_savepoint(&mut c, &sp, 2).await.unwrap_err();
    assert_eq!(code(&e).1, "3B001");
    c.end_transaction(txn, EndTransaction::Rollback).await.unwrap_or(());
    let txn = c.begin_transaction().await.unwrap();
    c.execute_update("INSERT INTO t VALUES (60001, 'kept', 0)".into(), Some(txn.clone())).await.unwrap();
    let sp = begin_savepoint(&mut c, &txn, "c").await.unwrap();
    c.execute_update("INSERT INTO t VALUES (60002, 'undone', 0)".into(), Some(txn.clone())).await.unwrap();
    end_savepoint(&mut c, &sp, 2).await.unwrap();
    c.execute_update("INSERT INTO t VALUES (60003, 'kept too', 0)".into(), Some(txn.clone())).await.unwrap();
    c.end_transaction(txn, EndTransaction::Commit).await.unwrap();
    assert_eq!(ints(&query(&mut c, "SELECT count(*) FROM t WHERE id = 60001").await.unwrap(), 0), vec![1]);
    assert_eq!(ints(&query(&mut c, "SELECT count(*) FROM t WHERE id IN (60002, 60003)").await.unwrap(), 0), vec![1]);
}

async fn begin_savepoint(
    c: &mut FlightSqlServiceClient<Channel>,
    txn: &bytes::Bytes,
    name: &str,
) -> Result<bytes::Bytes, FlightError> {
    use arrow_flight::sql::{ActionBeginSavepointRequest, ActionBeginSavepointResult, Any, ProstMessageExt};
    use prost::Message;
    let body = ActionBeginSavepointRequest { transaction_id: txn.clone(), name: name.into() }.as_any().encode_to_vec();
    let mut results = c.do_action(arrow_flight::Action { r#type: "BeginSavepoint".into(), body: body.into() }).await?;
    let r = results.message().await.map_err(|e| FlightError::Tonic(Box::new(e)))?.expect("a result");
    let any = Any::decode(&*r.body).map_err(|e| FlightError::DecodeError(e.to_string()))?;
    let res: ActionBeginSavepointResult =
        any.unpack().map_err(|e| FlightError::DecodeError(e.to_string()))?.expect("a savepoint");
    Ok(res.savepoint_id)
}

/// `action`: 1 release, 2 rollback.
async fn end_savepoint(
    c: &mut FlightSqlServiceClient<Channel>,
    sp: &bytes::Bytes,
    action: i32,
) -> Result<(), FlightError> {
    use arrow_flight::sql::{ActionEndSavepointRequest, ProstMessageExt};
    use prost::Message;
    let body = ActionEndSavepointRequest { savepoint_id: sp.clone(), action }.as_any().encode_to_vec();
    let mut results = c.do_action(arrow_flight::Action { r#type: "EndSavepoint".into(), body: body.into() }).await?;
    while results.message().await.map_err(|e| FlightError::Tonic(Box::new(e)))?.is_some() {}
    Ok(())
}

#[tokio::test]
async fn flight_sql_refuses_bad_input_with_clear_codes() {
    let server = TestServer::start_with(&[("BKG_DB_RLS_DEFAULT", "off")]);
    // Credentials.
    let mut anon = client(&server).await;
    let e = anon.handshake("postgres", "wrong").await.unwrap_err();
    assert!(format!("{e}").contains("password authentication failed"), "{e}");
    // Failed logins are throttled per role: after ten a minute even the right password waits.
    pg_user(&server, "guessed", "right-pass").await;
    for _ in 0..10 {
        let e = client(&server).await.handshake("guessed", "wrong").await.unwrap_err();
        assert!(format!("{e}").contains("password authentication failed"), "{e}");
    }
    let e = client(&server).await.handshake("guessed", "right-pass").await.unwrap_err();
    assert!(format!("{e}").contains("too many failed logins"), "{e}");
    client(&server).await.handshake("postgres", PASSWORD).await.expect("other roles are not affected");
    assert_eq!(code(&query(&mut anon, "SELECT 1").await.unwrap_err()).0, Code::Unauthenticated);
    anon.set_token("not-a-token".into());
    assert_eq!(code(&query(&mut anon, "SELECT 1").await.unwrap_err()).0, Code::Unauthenticated);

    let mut c = logged_in(&server).await;
    c.execute_update("CREATE TABLE k (id int PRIMARY KEY, v int NOT NULL)".into(), None).await.unwrap();
    // SQL errors keep their SQLSTATE.
    assert_eq!(code(&query(&mut c, "SELEC 1").await.unwrap_err()), (Code::InvalidArgument, "42601".into()));
    assert_eq!(code(&query(&mut c, "SELECT * FROM nope").await.unwrap_err()), (Code::NotFound, "42P01".into()));
    assert_eq!(code(&query(&mut c, "SELECT 1/0").await.unwrap_err()).1, "22012");
    let e = c.execute_update("INSERT INTO k VALUES (1, NULL)".into(), None).await.unwrap_err();
    assert_eq!(code(&e), (Code::FailedPrecondition, "23502".into()));
    assert_eq!(code(&query(&mut c, "SELECT 1; SELECT 2").await.unwrap_err()).1, "42601");
    // Calls outside a transaction run on pooled sessions: nothing may change them for the
    // next caller, so session state is refused rather than silently dropped.
    for sql in ["SET search_path TO nowhere", "RESET ALL", "DISCARD ALL", "BEGIN", "COMMIT"] {
        let e = c.execute_update(sql.into(), None).await.unwrap_err();
        assert_eq!(code(&e).1, "0A000", "{sql}: {e}");
    }
    let rows = query(&mut c, "SHOW search_path").await.unwrap();
    let shown = rows[0].column(0).as_any().downcast_ref::<StringArray>().unwrap().value(0).to_string();
    assert_eq!(shown, "\"$user\", public");
    // A locking clause takes row locks on the session path; where it would be ignored (in a
    // subquery) it is refused.
    query(&mut c, "SELECT * FROM k FOR UPDATE SKIP LOCKED").await.unwrap();
    let e = query(&mut c, "SELECT * FROM (SELECT * FROM k FOR UPDATE) s").await.unwrap_err();
    assert_eq!(code(&e).1, "0A000");
    // Tickets: garbage, a tampered one, and one issued to someone else.
    let e = c.do_get(Ticket::new(b"garbage".to_vec())).await.unwrap_err();
    assert_eq!(code(&e).0, Code::InvalidArgument);
    let info = c.execute("SELECT 1 AS one".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut bytes = ticket.ticket.to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let e = c.do_get(Ticket::new(bytes)).await;
    let e = match e {
        Err(e) => e,
        Ok(s) => s.try_collect::<Vec<_>>().await.unwrap_err(),
    };
    assert_eq!(code(&e).0, Code::InvalidArgument);
    pg_user(&server, "other", "other-pass").await;
    let mut other = client(&server).await;
    other.handshake("other", "other-pass").await.unwrap();
    let e = match other.do_get(ticket.clone()).await {
        Err(e) => e,
        Ok(s) => s.try_collect::<Vec<_>>().await.unwrap_err(),
    };
    assert_eq!(code(&e).0, Code::PermissionDenied);
    assert_eq!(ints(&c.do_get(ticket).await.unwrap().try_collect::<Vec<_>>().await.unwrap(), 0), vec![1]);
    // Privileges apply: `other` holds none on k.
    assert_eq!(code(&query(&mut other, "SELECT * FROM k").await.unwrap_err()).0, Code::PermissionDenied);
    // Prepared statements: closing twice, and someone else's handle.
    let p = c.prepare("SELECT v FROM k WHERE id = $1".into(), None).await.unwrap();
    let mut again = c.prepare("SELECT 1".into(), None).await.unwrap();
    again.set_parameters(RecordBatch::new_empty(Arc::new(Schema::empty()))).unwrap();
    p.close().await.unwrap();
    // Raw requests: an unknown prepared handle, a command that is not a Flight SQL message.
    let raw = |cmd: Vec<u8>, token: &str| {
        let mut req = tonic::Request::new(arrow_flight::FlightDescriptor::new_cmd(cmd));
        req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        req
    };
    let token = c.token().unwrap().clone();
    let unknown = arrow_flight::sql::CommandPreparedStatementQuery { prepared_statement_handle: vec![7u8; 16].into() };
    let unknown = arrow_flight::sql::ProstMessageExt::as_any(&unknown);
    let e = c.inner_mut().get_flight_info(raw(prost::Message::encode_to_vec(&unknown), &token)).await.unwrap_err();
    assert_eq!(e.metadata().get("x-sqlstate").map(|v| v.to_str().unwrap()), Some("26000"), "{e}");
    let e = c.inner_mut().get_flight_info(raw(b"\xff\x00not protobuf".to_vec(), &token)).await.unwrap_err();
    assert_ne!(e.code(), Code::Ok);

    // Ingest: a column the table does not have, and a wrong type; nothing is written.
    let cmd = ingest_cmd("k", TableNotExistOption::Fail, TableExistsOption::Append);
    let stream = futures::stream::iter(vec![Ok(people(1, 3))]);
    assert_eq!(code(&c.execute_ingest(cmd.clone(), stream).await.unwrap_err()).1, "42703");
    let schema =
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false), Field::new("v", DataType::Utf8, false)]));
    let bad = RecordBatch::try_new(
        schema,
        vec![Arc::new(Int32Array::from(vec![1, 2])), Arc::new(StringArray::from(vec!["5", "x"]))],
    )
    .unwrap();
    let e = c.execute_ingest(cmd, futures::stream::iter(vec![Ok(bad)])).await.unwrap_err();
    assert_eq!(code(&e).1, "22P02");
    assert_eq!(ints(&query(&mut c, "SELECT count(*) FROM k").await.unwrap(), 0), vec![0]);
    // The server is still fine.
    assert_eq!(ints(&query(&mut c, "SELECT 41 + 1").await.unwrap(), 0), vec![42]);
}

async fn pg_user(server: &TestServer, name: &str, password: &str) {
    let pg = server.connect().await;
    pg.batch_execute(&format!("CREATE USER {name} PASSWORD '{password}'")).await.unwrap();
}

/// Row-level security over Flight: JWT bearers see their own rows only, cannot forge rows,
/// and cannot redeem each other's tickets; a superuser token is refused.
#[tokio::test]
async fn flight_sql_enforces_row_level_security_for_jwt_bearers() {
    let server = TestServer::start_with(&[("BKG_DB_JWT_SECRET", SECRET)]);
    let pg = server.connect().await;
    pg.batch_execute(
        "CREATE TABLE todos (id int PRIMARY KEY, owner text NOT NULL DEFAULT auth.uid(), task text);
         GRANT SELECT, INSERT ON todos TO authenticated;
         CREATE POLICY own ON todos USING (owner = auth.uid()) WITH CHECK (owner = auth.uid());
         INSERT INTO todos VALUES (1, 'A', 'a1'), (2, 'A', 'a2'), (3, 'B', 'b1');",
    )
    .await
    .unwrap();
    let bearer = |claims| {
        let server = &server;
        async move {
            let mut c = client(server).await;
            c.set_token(token(claims));
            c
        }
    };
    let mut a = bearer(json!({"role": "authenticated", "sub": "A"})).await;
    let mut b = bearer(json!({"role": "authenticated", "sub": "B"})).await;
    let mut anon = bearer(json!({"role": "anon"})).await;
    let rows = query(&mut a, "SELECT id FROM todos ORDER BY id").await.unwrap();
    assert_eq!(ints(&rows, 0), vec![1, 2]);
    let rows = query(&mut b, "SELECT id, task FROM todos").await.unwrap();
    assert_eq!(ints(&rows, 0), vec![3]);
    assert_eq!(code(&query(&mut anon, "SELECT id FROM todos").await.unwrap_err()).0, Code::PermissionDenied);
    // Predicates do not reach hidden rows (a division by zero on B's row would fail).
    let rows = query(&mut a, "SELECT id FROM todos WHERE 1 / (id - 3) IS NOT NULL ORDER BY id").await.unwrap();
    assert_eq!(ints(&rows, 0), vec![1, 2]);
    // A's ticket is A's.
    let info = a.execute("SELECT * FROM todos".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let e = match b.do_get(ticket).await {
        Err(e) => e,
        Ok(s) => s.try_collect::<Vec<_>>().await.unwrap_err(),
    };
    assert_eq!(code(&e).0, Code::PermissionDenied);
    // Writes are checked: a row for someone else is refused, on the statement and the ingest.
    let e = a.execute_update("INSERT INTO todos VALUES (4, 'B', 'forged')".into(), None).await.unwrap_err();
    assert_eq!(code(&e), (Code::PermissionDenied, "42501".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("owner", DataType::Utf8, false),
        Field::new("task", DataType::Utf8, true),
    ]));
    let forged = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![5, 6])),
            Arc::new(StringArray::from(vec!["A", "B"])),
            Arc::new(StringArray::from(vec!["mine", "theirs"])),
        ],
    )
    .unwrap();
    let cmd = ingest_cmd("todos", TableNotExistOption::Fail, TableExistsOption::Append);
    let e = a.execute_ingest(cmd.clone(), futures::stream::iter(vec![Ok(forged.clone())])).await.unwrap_err();
    assert_eq!(code(&e).1, "42501");
    assert_eq!(ints(&query(&mut a, "SELECT id FROM todos ORDER BY id").await.unwrap(), 0), vec![1, 2]);
    let own = forged.slice(0, 1);
    assert_eq!(a.execute_ingest(cmd, futures::stream::iter(vec![Ok(own)])).await.unwrap(), 1);
    // Tables A cannot see stay out of its metadata; the superuser is not reachable by token.
    let info = a
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: false,
        })
        .await
        .unwrap();
    let names = texts(&fetch(&mut a, info).await.unwrap(), 2);
    assert!(names.contains(&Some("todos".into())) && !names.contains(&Some("users".into())), "{names:?}");
    let mut su = bearer(json!({"role": "postgres"})).await;
    assert_eq!(code(&query(&mut su, "SELECT 1").await.unwrap_err()).0, Code::PermissionDenied);
    let _ = pg.query("SELECT 1", &[]).await.unwrap();
}

/// A DoPut the client abandons mid-stream (the call is dropped: HTTP/2 resets the stream) writes
/// nothing, pins nothing, and the next ingest on the same channel works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_do_put_writes_nothing() {
    let server = TestServer::start_with(&[("BKG_DB_RLS_DEFAULT", "off")]);
    let pg = server.connect().await;
    pg.batch_execute("CREATE TABLE people (id int PRIMARY KEY, name text)").await.unwrap();
    let mut c = logged_in(&server).await;
    let cmd = ingest_cmd("people", TableNotExistOption::Fail, TableExistsOption::Append);
    // Two batches, then the client stalls: the server has started the ingest when it is dropped.
    let stalled =
        futures::stream::iter(vec![Ok(people(0, 5_000)), Ok(people(5_000, 5_000))]).chain(futures::stream::pending());
    let mut abandoned = c.clone();
    let call = tokio::spawn(async move { abandoned.execute_ingest(cmd, stalled).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!call.is_finished(), "the ingest waits for the rest of the stream");
    call.abort();
    let _ = call.await;
    server.wait_unpinned("abandoned DoPut");
    let n: i64 = pg.query_one("SELECT count(*) FROM people", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "an abandoned ingest wrote rows");
    let cmd = ingest_cmd("people", TableNotExistOption::Fail, TableExistsOption::Append);
    assert_eq!(c.execute_ingest(cmd, futures::stream::iter(vec![Ok(people(0, 3))])).await.unwrap(), 3);
}

//! The REST front door as scenario tables: method, path, headers, body, expected status, what the
//! response must contain and what it must not. The server is a real process; the schema is made
//! over pgwire, so these also show that tables from any front door are served at once.

use super::server::TestServer;

struct Case {
    method: &'static str,
    path: &'static str,
    /// Extra headers; the service key is sent unless `key` says otherwise.
    headers: &'static [(&'static str, &'static str)],
    key: Key,
    body: &'static str,
    status: u16,
    has: &'static [&'static str],
    not: &'static [&'static str],
}

#[derive(Clone, Copy)]
enum Key {
    Service,
    Anon,
    None,
    Raw(&'static str),
}

const fn get(path: &'static str, status: u16, has: &'static [&'static str], not: &'static [&'static str]) -> Case {
    Case { method: "GET", path, headers: &[], key: Key::Service, body: "", status, has, not }
}

fn run(server: &TestServer, cases: &[Case]) {
    let (anon, service) = server.api_keys();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let mut headers: Vec<(&str, &str)> = c.headers.to_vec();
        let auth;
        match c.key {
            Key::Service => headers.push(("apikey", &service)),
            Key::Anon => headers.push(("apikey", &anon)),
            Key::Raw(k) => {
                auth = format!("Bearer {k}");
                headers.push(("Authorization", &auth));
            }
            Key::None => {}
        }
        if !c.body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        let (status, head, body) = server.http(c.method, c.path, &headers, c.body.as_bytes());
        let text = format!("{head}\n\n{body}");
        let mut why = Vec::new();
        if status != c.status {
            why.push(format!("status {status}, expected {}", c.status));
        }
        for h in c.has {
            if !text.contains(h) {
                why.push(format!("missing {h:?}"));
            }
        }
        for n in c.not {
            if text.contains(n) {
                why.push(format!("must not contain {n:?}"));
            }
        }
        if status >= 400 && !body.contains("\"code\"") {
            why.push("error without a code".into());
        }
        if !why.is_empty() {
            failures.push(format!("case {i}: {} {}: {}\n  response: {text}", c.method, c.path, why.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

async fn schema(server: &TestServer) {
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, email text, age int, data jsonb, \
             created timestamptz DEFAULT now());
         CREATE TABLE posts (id serial PRIMARY KEY, author_id int REFERENCES users(id), title text NOT NULL, \
             tags text[], score float8 DEFAULT 1.5);
         CREATE TABLE secrets (id int PRIMARY KEY, v text);
         CREATE TABLE pairs (a int, b int, note text, PRIMARY KEY (a, b));
         INSERT INTO users VALUES
           (1, 'ann', 'ann@example.com', 31, '{\"plan\": {\"tier\": \"pro\"}, \"n\": 1}', '2024-01-01 10:00:00+00'),
           (2, 'bob', NULL, 25, NULL, '2024-01-02 10:00:00+00'),
           (3, 'Cy, Jr.', 'cy@example.com', NULL, '{\"plan\": {\"tier\": \"free\"}}', '2024-01-03 10:00:00+00');
         INSERT INTO posts (author_id, title, tags) VALUES (1, 'hello', '{a,b}'), (1, 'second', NULL), (2, 'bobs', '{c}');
         INSERT INTO secrets VALUES (1, 'top');
         GRANT SELECT ON users TO anon;
         CREATE POLICY users_readable ON users FOR SELECT USING (true);
         CREATE POLICY posts_readable ON posts FOR SELECT USING (true);",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn rest_reads() {
    let server = TestServer::start_with(&[("BKG_DB_REST_RATE_PER_S", "0")]);
    schema(&server).await;
    run(
        &server,
        &[
            get(
                "/rest/v1/users?select=id,name&order=id",
                200,
                &[r#"[{"id":1,"name":"ann"},{"id":2,"name":"bob"},{"id":3,"name":"Cy, Jr."}]"#, "content-range: 0-2/*"],
                &[],
            ),
            get("/rest/v1/users?id=eq.2&select=name", 200, &[r#"[{"name":"bob"}]"#], &["ann"]),
            get("/rest/v1/users?id=neq.2&select=id&order=id", 200, &[r#"[{"id":1},{"id":3}]"#], &[]),
            get("/rest/v1/users?age=gt.25&select=id", 200, &[r#"[{"id":1}]"#], &[r#""id":2"#]),
            get("/rest/v1/users?age=gte.25&age=lte.30&select=id", 200, &[r#"[{"id":2}]"#], &[]),
            get("/rest/v1/users?name=like.*n*&select=id&order=id", 200, &[r#"[{"id":1}]"#], &[r#""id":3"#]),
            get("/rest/v1/users?name=ilike.C*&select=id", 200, &[r#"[{"id":3}]"#], &[]),
            get("/rest/v1/users?name=match.%5Eb&select=id", 200, &[r#"[{"id":2}]"#], &[]),
            get("/rest/v1/users?name=imatch.%5EB&select=id", 200, &[r#"[{"id":2}]"#], &[]),
            get("/rest/v1/users?id=in.(1,3)&select=id&order=id", 200, &[r#"[{"id":1},{"id":3}]"#], &[]),
            get(
                "/rest/v1/users?name=in.(%22Cy,%20Jr.%22,bob)&select=id&order=id",
                200,
                &[r#"[{"id":2},{"id":3}]"#],
                &[],
            ),
            get("/rest/v1/users?email=is.null&select=id", 200, &[r#"[{"id":2}]"#], &[]),
            get("/rest/v1/users?email=not.is.null&select=id&order=id", 200, &[r#"[{"id":1},{"id":3}]"#], &[]),
            get("/rest/v1/users?age=not.eq.31&select=id", 200, &[r#"[{"id":2}]"#], &[]),
            get("/rest/v1/users?or=(id.eq.1,age.is.null)&select=id&order=id", 200, &[r#"[{"id":1},{"id":3}]"#], &[]),
            get(
                "/rest/v1/users?or=(id.eq.2,and(age.gt.30,email.like.*example*))&select=id&order=id",
                200,
                &[r#"[{"id":1},{"id":2}]"#],
                &[],
            ),
            get("/rest/v1/users?not.or=(id.eq.1,id.eq.2)&select=id", 200, &[r#"[{"id":3}]"#], &[]),
            get(
                "/rest/v1/users?and=(id.gte.1,or(age.lt.30,age.is.null))&select=id&order=id",
                200,
                &[r#"[{"id":2},{"id":3}]"#],
                &[],
            ),
            // select: aliases, casts, JSON paths
            get("/rest/v1/users?select=who:name,age::text&id=eq.1", 200, &[r#"[{"who":"ann","age":"31"}]"#], &[]),
            get(
                "/rest/v1/users?select=id,data-%3Eplan-%3E%3Etier&order=id",
                200,
                &[r#"[{"id":1,"tier":"pro"},{"id":2,"tier":null},{"id":3,"tier":"free"}]"#],
                &[],
            ),
            get("/rest/v1/users?select=id,data-%3Eplan&id=eq.1", 200, &[r#"[{"id":1,"plan":{"tier":"pro"}}]"#], &[]),
            get("/rest/v1/users?select=id&data-%3Eplan-%3E%3Etier=eq.free", 200, &[r#"[{"id":3}]"#], &[]),
            get("/rest/v1/users?select=data&id=eq.1", 200, &[r#""data":{"plan": {"tier": "pro"}, "n": 1}"#], &[]),
            get("/rest/v1/users?select=created&id=eq.1", 200, &[r#"[{"created":"2024-01-01T10:00:00+00:00"}]"#], &[]),
            get("/rest/v1/posts?select=tags,score&id=eq.1", 200, &[r#"[{"tags":["a","b"],"score":1.5}]"#], &[]),
            // order, limit, offset, Range, counts
            get("/rest/v1/users?select=id&order=age.desc.nullslast", 200, &[r#"[{"id":1},{"id":2},{"id":3}]"#], &[]),
            get("/rest/v1/users?select=id&order=age.desc.nullsfirst", 200, &[r#"[{"id":3},{"id":1},{"id":2}]"#], &[]),
            get(
                "/rest/v1/users?select=id&order=id&limit=1&offset=1",
                200,
                &[r#"[{"id":2}]"#, "content-range: 1-1/*"],
                &[],
            ),
            Case {
                headers: &[("Range", "0-1"), ("Prefer", "count=exact")],
                ..get(
                    "/rest/v1/users?select=id&order=id",
                    206,
                    &[r#"[{"id":1},{"id":2}]"#, "content-range: 0-1/3", "preference-applied: count=exact"],
                    &[],
                )
            },
            Case {
                headers: &[("Prefer", "count=exact")],
                ..get("/rest/v1/users?select=id&age=is.null", 200, &["content-range: 0-0/1"], &[])
            },
            Case {
                headers: &[("Prefer", "count=exact")],
                ..get("/rest/v1/users?offset=10", 416, &["PGRST103", "content-range: */3"], &[])
            },
            Case {
                method: "HEAD",
                headers: &[("Prefer", "count=exact")],
                ..get("/rest/v1/users", 200, &["content-range: 0-2/3"], &["ann"])
            },
            // embedding
            get(
                "/rest/v1/posts?select=title,author:users(name)&order=id",
                200,
                &[
                    r#"[{"title":"hello","author":{"name":"ann"}},{"title":"second","author":{"name":"ann"}},{"title":"bobs","author":{"name":"bob"}}]"#,
                ],
                &[],
            ),
            get(
                "/rest/v1/users?select=name,posts(title)&order=id",
                200,
                &[
                    r#"{"name":"ann","posts":[{"title":"hello"},{"title":"second"}]}"#,
                    r#"{"name":"Cy, Jr.","posts":[]}"#,
                ],
                &[],
            ),
            get(
                "/rest/v1/users?select=name,posts!inner(title)&posts.title=eq.bobs",
                200,
                &[r#"[{"name":"bob","posts":[{"title":"bobs"}]}]"#],
                &["ann"],
            ),
            get(
                "/rest/v1/users?select=name,posts(title)&posts.title=eq.second&id=eq.1",
                200,
                &[r#"[{"name":"ann","posts":[{"title":"second"}]}]"#],
                &["hello"],
            ),
            get(
                "/rest/v1/posts?select=title,users(name,posts(title))&id=eq.3",
                200,
                &[r#"{"title":"bobs","users":{"name":"bob","posts":[{"title":"bobs"}]}}"#],
                &[],
            ),
            get("/rest/v1/users?select=name,secrets(v)", 400, &["PGRST200"], &["top"]),
            // formats
            Case {
                headers: &[("Accept", "application/vnd.pgrst.object+json")],
                ..get(
                    "/rest/v1/users?id=eq.2&select=id,name",
                    200,
                    &[r#"{"id":2,"name":"bob"}"#, "application/vnd.pgrst.object+json"],
                    &["["],
                )
            },
            Case {
                headers: &[("Accept", "application/vnd.pgrst.object+json")],
                ..get("/rest/v1/users?select=id", 406, &["PGRST116", "The result contains 3 rows"], &[])
            },
            Case {
                headers: &[("Accept", "text/csv")],
                ..get(
                    "/rest/v1/users?select=id,name&order=id",
                    200,
                    &["id,name\n1,ann\n2,bob\n3,\"Cy, Jr.\"", "text/csv"],
                    &[],
                )
            },
            Case { headers: &[("Accept", "image/png")], ..get("/rest/v1/users", 406, &["PGRST107"], &[]) },
            Case { headers: &[("Accept-Profile", "private")], ..get("/rest/v1/users", 406, &["PGRST106"], &[]) },
            // auth
            Case { key: Key::None, ..get("/rest/v1/users", 401, &["PGRST302"], &["ann"]) },
            Case { key: Key::Raw("not.a.token"), ..get("/rest/v1/users", 401, &["PGRST301"], &["ann"]) },
            Case { key: Key::Anon, ..get("/rest/v1/users?select=id&id=eq.1", 200, &[r#"[{"id":1}]"#], &[]) },
            Case {
                key: Key::Anon,
                ..get("/rest/v1/secrets", 401, &["42501", "permission denied for table secrets"], &["top"])
            },
            // subqueries cannot smuggle reads past privileges: embedding runs as the same role
            Case { key: Key::Anon, ..get("/rest/v1/users?select=id,posts(title)", 401, &["42501"], &["hello"]) },
            // bad input: always 4xx with a code, never 5xx
            get("/rest/v1/nope", 404, &["42P01"], &[]),
            get("/rest/v1/users?id=eq.abc", 400, &["22P02"], &[]),
            get("/rest/v1/users?nope=eq.1", 400, &["42703"], &[]),
            get("/rest/v1/users?select=nope", 400, &["42703"], &[]),
            get("/rest/v1/users?id=zz.1", 400, &["PGRST100"], &[]),
            get("/rest/v1/users?id=eq", 400, &["PGRST100"], &[]),
            get("/rest/v1/users?or=(id.eq.1", 400, &["PGRST100"], &[]),
            get("/rest/v1/users?select=id,name::int);drop%20table%20users;--", 400, &["PGRST100"], &[]),
            get("/rest/v1/users?select=id&order=id;drop", 400, &[], &[]),
            get("/rest/v1/users?limit=x", 400, &["PGRST100"], &[]),
            get("/rest/v1/users?%22id%22%20=eq.1%27%3B%20drop%20table%20users--", 400, &[], &[]),
            get("/rest/v1/users?name=eq.x%27%3B%20drop%20table%20users%3B--&select=id", 200, &["[]"], &[]),
            get(
                "/rest/v1/users?or=(or(or(or(or(or(or(or(or(or(or(or(or(or(or(or(or(or(or(or(id.eq.1))))))))))))))))))))",
                400,
                &["PGRST100", "nest"],
                &[],
            ),
            get("/rest/v1/rpc/nosuch", 404, &["PGRST202"], &[]),
            get("/nowhere", 404, &["PGRST125"], &[]),
            // the table survived every attempt above
            get("/rest/v1/users?select=id&order=id", 200, &[r#"[{"id":1},{"id":2},{"id":3}]"#], &[]),
            // rpc of a function the engine has
            Case { method: "POST", body: r#"{"a": 2, "b": 10}"#, ..get("/rest/v1/rpc/power", 200, &["1024"], &[]) },
        ],
    );
}

#[tokio::test]
async fn rest_writes() {
    let server = TestServer::start_with(&[("BKG_DB_REST_RATE_PER_S", "0"), ("BKG_DB_REST_BODY_MAX_MB", "1")]);
    schema(&server).await;
    let post = |path, headers, body, status, has, not| Case {
        method: "POST",
        path,
        headers,
        key: Key::Service,
        body,
        status,
        has,
        not,
    };
    run(
        &server,
        &[
            post("/rest/v1/users", &[], r#"{"id": 10, "name": "new"}"#, 201, &[], &["new"]),
            post(
                "/rest/v1/users",
                &[("Prefer", "return=representation")],
                r#"[{"id": 11, "name": "a"}, {"id": 12, "name": "b"}]"#,
                201,
                &[r#"[{"id":11,"name":"a","#, r#"{"id":12,"name":"b""#],
                &[],
            ),
            post(
                "/rest/v1/users?select=id,name",
                &[("Prefer", "return=representation")],
                r#"{"id": 13, "name": "c", "data": {"k": [1, 2]}}"#,
                201,
                &[r#"[{"id":13,"name":"c"}]"#],
                &["data"],
            ),
            post(
                "/rest/v1/users?select=data",
                &[("Prefer", "return=representation")],
                r#"{"id": 14, "name": "j", "data": {"k": [1, 2]}}"#,
                201,
                &[r#"[{"data":{"k":[1,2]}}]"#],
                &[],
            ),
            post(
                "/rest/v1/posts?select=title,tags,score",
                &[("Prefer", "return=representation")],
                r#"{"author_id": 10, "title": "t", "tags": ["x", "y z"]}"#,
                201,
                &[r#"[{"title":"t","tags":["x","y z"],"score":1.5}]"#],
                &[],
            ),
            post("/rest/v1/users", &[], r#"{"id": 10, "name": "dup"}"#, 409, &["23505"], &[]),
            post(
                "/rest/v1/users",
                &[("Prefer", "return=representation,resolution=merge-duplicates")],
                r#"{"id": 10, "name": "merged"}"#,
                201,
                &[r#""name":"merged""#, "preference-applied: return=representation, resolution=merge-duplicates"],
                &[],
            ),
            post(
                "/rest/v1/users",
                &[("Prefer", "return=representation,resolution=ignore-duplicates")],
                r#"[{"id": 10, "name": "ignored"}, {"id": 15, "name": "fresh"}]"#,
                201,
                &[r#""name":"fresh""#],
                &["ignored"],
            ),
            post(
                "/rest/v1/users?on_conflict=email",
                &[("Prefer", "resolution=merge-duplicates")],
                r#"{"id": 16, "name": "x"}"#,
                400,
                &["42P10"],
                &[],
            ),
            post(
                "/rest/v1/users?columns=id,name,age",
                &[("Prefer", "return=representation,missing=default")],
                r#"[{"id": 17, "name": "d"}, {"id": 18, "name": "e", "age": 5}]"#,
                201,
                &[r#""id":17,"name":"d","email":null,"age":null"#, r#""id":18,"name":"e","email":null,"age":5"#],
                &[],
            ),
            post(
                "/rest/v1/posts?select=score",
                &[("Prefer", "return=representation,missing=default")],
                r#"{"author_id": 1, "title": "defaults"}"#,
                201,
                &[r#"[{"score":1.5}]"#],
                &[],
            ),
            post(
                "/rest/v1/users",
                &[],
                r#"[{"id": 19, "name": "a"}, {"id": 20}]"#,
                400,
                &["PGRST102", "All object keys must match"],
                &[],
            ),
            post("/rest/v1/users", &[], r#"{"id": 21}"#, 400, &["23502"], &[]),
            post("/rest/v1/users", &[], r#"{"id": "x", "name": "a"}"#, 400, &["22P02"], &[]),
            post("/rest/v1/users", &[], r#"{"id": 22, "nope": 1}"#, 400, &["PGRST204"], &[]),
            post("/rest/v1/users", &[], r#"{"id": 23,"#, 400, &["PGRST102"], &[]),
            post("/rest/v1/users", &[], r#""just a string""#, 400, &["PGRST102"], &[]),
            post("/rest/v1/posts", &[], r#"{"author_id": 999, "title": "orphan"}"#, 409, &["23503"], &[]),
            post(
                "/rest/v1/users",
                &[("Prefer", "return=headers-only")],
                r#"{"id": 24, "name": "loc"}"#,
                201,
                &["location: /users?id=eq.24"],
                &[],
            ),
            post(
                "/rest/v1/users",
                &[("Accept", "application/vnd.pgrst.object+json"), ("Prefer", "return=representation")],
                r#"[{"id": 25, "name": "p"}, {"id": 26, "name": "q"}]"#,
                406,
                &["PGRST116"],
                &[],
            ),
            // ... and the 406 rolled the insert back
            get("/rest/v1/users?id=in.(25,26)", 200, &["[]"], &[]),
            // PATCH / DELETE / PUT
            Case {
                method: "PATCH",
                body: r#"{"age": 40}"#,
                headers: &[("Prefer", "return=representation")],
                ..get(
                    "/rest/v1/users?id=eq.10&select=id,age",
                    200,
                    &[r#"[{"id":10,"age":40}]"#, "content-range: 0-0/*"],
                    &[],
                )
            },
            Case {
                method: "PATCH",
                body: r#"{"age": 41}"#,
                ..get("/rest/v1/users?id=in.(11,12)", 204, &["content-range: 0-1/*"], &[])
            },
            Case { method: "PATCH", body: r#"{"age": 1}"#, ..get("/rest/v1/users", 400, &["21000"], &[]) },
            Case { method: "PATCH", body: r#"{"age": "old"}"#, ..get("/rest/v1/users?id=eq.10", 400, &["22P02"], &[]) },
            Case {
                method: "PATCH",
                body: r#"[{"age": 1}]"#,
                ..get("/rest/v1/users?id=eq.10", 400, &["PGRST102"], &[])
            },
            Case {
                method: "DELETE",
                headers: &[("Prefer", "return=representation")],
                ..get("/rest/v1/users?id=eq.15&select=name", 200, &[r#"[{"name":"fresh"}]"#], &[])
            },
            Case { method: "DELETE", ..get("/rest/v1/users?id=gte.17&id=lte.18", 204, &["content-range: 0-1/*"], &[]) },
            Case { method: "DELETE", ..get("/rest/v1/users", 400, &["21000"], &[]) },
            Case { method: "DELETE", ..get("/rest/v1/users?id=eq.1", 409, &["23503"], &[]) },
            Case {
                method: "PUT",
                body: r#"{"id": 30, "name": "put"}"#,
                headers: &[("Prefer", "return=representation")],
                ..get("/rest/v1/users?id=eq.30&select=id,name", 200, &[r#"[{"id":30,"name":"put"}]"#], &[])
            },
            Case {
                method: "PUT",
                body: r#"{"id": 30, "name": "put2"}"#,
                headers: &[("Prefer", "return=representation")],
                ..get("/rest/v1/users?id=eq.30&select=name", 200, &[r#"[{"name":"put2"}]"#], &[])
            },
            Case {
                method: "PUT",
                body: r#"{"id": 31, "name": "x"}"#,
                ..get("/rest/v1/users?id=eq.30", 400, &["PGRST115"], &[])
            },
            Case {
                method: "PUT",
                body: r#"{"id": 30, "name": "x"}"#,
                ..get("/rest/v1/users?name=eq.x", 405, &["PGRST105"], &[])
            },
            Case {
                method: "PUT",
                body: r#"{"a": 1, "b": 2, "note": "n"}"#,
                headers: &[("Prefer", "return=representation")],
                ..get("/rest/v1/pairs?a=eq.1&b=eq.2", 200, &[r#""note":"n""#], &[])
            },
            // privileges: anon may read users but not write them
            Case {
                key: Key::Anon,
                ..post("/rest/v1/users", &[], r#"{"id": 40, "name": "anon"}"#, 401, &["42501"], &[])
            },
            Case { key: Key::Anon, method: "DELETE", ..get("/rest/v1/users?id=eq.2", 401, &["42501"], &[]) },
            get("/rest/v1/users?id=eq.40", 200, &["[]"], &[]),
            get("/rest/v1/users?id=eq.2&select=name", 200, &[r#"[{"name":"bob"}]"#], &[]),
        ],
    );
    // A body over BKG_DB_REST_BODY_MAX_MB is refused with 413, and nothing is written.
    let (_, service) = server.api_keys();
    let big = format!(
        "[{}]",
        (0..60_000).map(|i| format!(r#"{{"id":{},"name":"bulk"}}"#, 1000 + i)).collect::<Vec<_>>().join(",")
    );
    assert!(big.len() > 1 << 20);
    let (status, _, body) = server.http(
        "POST",
        "/rest/v1/users",
        &[("apikey", &service), ("Content-Type", "application/json")],
        big.as_bytes(),
    );
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("PGRST413"), "{body}");
    let c = server.connect().await;
    let n: i64 = c.query_one("SELECT count(*) FROM users WHERE name = 'bulk'", &[]).await.unwrap().get(0);
    assert_eq!(n, 0);
    // A table created over pgwire after REST requests (pooled sessions) is served at once, and
    // a GRANT made now applies to the next request.
    c.batch_execute("CREATE TABLE late (id int PRIMARY KEY); INSERT INTO late VALUES (1)").await.unwrap();
    let (anon, _) = server.api_keys();
    let (status, _, body) = server.http("GET", "/rest/v1/late", &[("apikey", &service)], b"");
    assert_eq!((status, body.as_str()), (200, r#"[{"id":1}]"#));
    let (status, _, _) = server.http("GET", "/rest/v1/late", &[("apikey", &anon)], b"");
    assert_eq!(status, 401);
    c.batch_execute("GRANT SELECT ON late TO anon").await.unwrap();
    // New tables in exposed schemas start with row-level security on: no policy, no rows.
    let (status, _, body) = server.http("GET", "/rest/v1/late", &[("apikey", &anon)], b"");
    assert_eq!((status, body.as_str()), (200, "[]"));
    c.batch_execute("CREATE POLICY late_read ON late FOR SELECT TO anon USING (id > 0)").await.unwrap();
    let (status, _, body) = server.http("GET", "/rest/v1/late", &[("apikey", &anon)], b"");
    assert_eq!((status, body.as_str()), (200, r#"[{"id":1}]"#));
    // What REST wrote is visible over pgwire at once.
    let row = c.query_one("SELECT name, age FROM users WHERE id = 10", &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, Option<i32>>(1)), ("merged".to_string(), Some(40)));
}

#[tokio::test]
async fn rest_rate_limit() {
    let server = TestServer::start_with(&[("BKG_DB_REST_RATE_PER_S", "2"), ("BKG_DB_REST_RATE_BURST", "3")]);
    let (_, service) = server.api_keys();
    let mut statuses = Vec::new();
    let mut retry_after = false;
    for _ in 0..6 {
        let (s, head, _) = server.http("GET", "/rest/v1/nope", &[("apikey", &service)], b"");
        retry_after |= s == 429 && head.contains("retry-after: 1");
        statuses.push(s);
    }
    assert_eq!(&statuses[..3], &[404, 404, 404], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert!(retry_after);
    // Every request is counted, and the six answers above were client errors.
    let (_, metrics) = server.http_get("/metrics");
    assert!(metrics.contains("\nbkg_http_requests_total 7\n"), "{metrics}");
    assert!(metrics.contains("\nbkg_http_client_errors_total 6\n"), "{metrics}");
    assert!(metrics.contains("\nbkg_http_server_errors_total 0\n"), "{metrics}");
}

#[tokio::test]
async fn sql_over_http() {
    let server = TestServer::start_with(&[("BKG_DB_REST_RATE_PER_S", "0"), ("BKG_DB_QUERY_MAX_ROWS", "5")]);
    schema(&server).await;
    let post = |key: Key,
                accept: &'static str,
                body: &'static str,
                status: u16,
                has: &'static [&'static str],
                not: &'static [&'static str]| Case {
        method: "POST",
        path: "/query",
        headers: if accept.is_empty() { &[] } else { Box::leak(Box::new([("Accept", accept)])) },
        key,
        body,
        status,
        has,
        not,
    };
    let s = Key::Service;
    run(
        &server,
        &[
            post(
                s,
                "",
                r#"{"query": "SELECT CAST($1 AS int) AS n, $2 AS s, $3 AS b", "params": [41, "x'y", true]}"#,
                200,
                &[
                    r#"{"results":[{"command":"SELECT 1","columns":[{"name":"n","type":"int4"},{"name":"s","type":"text"},{"name":"b","type":"bool"}],"rows":[{"n":41,"s":"x'y","b":true}]}]}"#,
                ],
                &[],
            ),
            post(
                s,
                "",
                r#"{"query": "SELECT name FROM users WHERE id = $1", "params": [2]}"#,
                200,
                &[r#""rows":[{"name":"bob"}]"#],
                &["ann"],
            ),
            // a batch is one transaction: all or nothing
            post(
                s,
                "",
                r#"{"batch": [{"query": "INSERT INTO secrets VALUES ($1, $2)", "params": [7, "a"]}, {"query": "INSERT INTO secrets VALUES ($1, $2)", "params": [7, "dup"]}]}"#,
                409,
                &["23505"],
                &[],
            ),
            post(
                s,
                "",
                r#"{"query": "SELECT count(*) AS n FROM secrets WHERE id = 7"}"#,
                200,
                &[r#""rows":[{"n":0}]"#],
                &[],
            ),
            post(
                s,
                "",
                r#"{"batch": [{"query": "CREATE TABLE notes (id int PRIMARY KEY, body text)"}, {"query": "INSERT INTO notes VALUES ($1, $2), (2, 'b')", "params": [1, "a"]}, {"query": "SELECT * FROM notes ORDER BY id"}]}"#,
                200,
                &[
                    r#"{"command":"CREATE TABLE"}"#,
                    r#"{"command":"INSERT 0 2"}"#,
                    r#""rows":[{"id":1,"body":"a"},{"id":2,"body":"b"}]"#,
                ],
                &[],
            ),
            post(
                s,
                "text/csv",
                r#"{"query": "SELECT id, body FROM notes ORDER BY id"}"#,
                200,
                &["text/csv", "id,body\n1,a\n2,b"],
                &[],
            ),
            post(
                s,
                "application/vnd.apache.arrow.stream",
                r#"{"query": "SELECT id FROM notes"}"#,
                200,
                &["content-type: application/vnd.apache.arrow.stream"],
                &[],
            ),
            // refused: session and transaction control, parameters for several statements
            post(s, "", r#"{"query": "SET statement_timeout = 0"}"#, 400, &["0A000"], &[]),
            post(s, "", r#"{"query": "BEGIN"}"#, 400, &["0A000"], &[]),
            post(s, "", r#"{"query": "RESET statement_timeout"}"#, 400, &["0A000"], &[]),
            post(s, "", r#"{"query": "SELECT 1; SELECT $1", "params": [1]}"#, 400, &["42601"], &[]),
            post(s, "", r#"{"query": "SELECT $2", "params": [1]}"#, 400, &["08P01"], &[]),
            post(s, "", r#"{"query": "SELEC 1"}"#, 400, &["42601"], &[]),
            post(s, "", r#"{"sql": "SELECT 1"}"#, 400, &["PGRST102"], &[]),
            post(s, "", r#"not json"#, 400, &["PGRST102"], &[]),
            post(s, "image/png", r#"{"query": "SELECT 1"}"#, 406, &["PGRST107"], &[]),
            // the row limit is an error, never a silent cut
            post(s, "", r#"{"query": "SELECT * FROM generate_series(1, 10)"}"#, 413, &["54000"], &[]),
            // privileges as over pgwire
            post(Key::Anon, "", r#"{"query": "SELECT v FROM secrets"}"#, 401, &["42501"], &["top"]),
            post(Key::Anon, "", r#"{"query": "SELECT name FROM users WHERE id = 1"}"#, 200, &["ann"], &[]),
            post(Key::Anon, "", r#"{"query": "CREATE TABLE mine (id int)"}"#, 401, &["42501"], &[]),
            post(Key::None, "", r#"{"query": "SELECT 1"}"#, 401, &["PGRST302"], &[]),
        ],
    );
}

fn bkg(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_bkg-db")).args(args).envs(env.iter().copied()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test]
async fn migrations_by_command_and_over_http() {
    let files = tempfile::tempdir().unwrap();
    let mdir = files.path().join("migrations");
    std::fs::create_dir(&mdir).unwrap();
    std::fs::write(
        mdir.join("20260101000000_todos.sql"),
        "CREATE TABLE todos (id int PRIMARY KEY, title text NOT NULL);",
    )
    .unwrap();
    std::fs::write(
        mdir.join("20260102000000_seed.sql"),
        "INSERT INTO todos VALUES (1, 'first');\nINSERT INTO todos VALUES (2, 'second');",
    )
    .unwrap();
    std::fs::write(mdir.join("README.md"), "not a migration").unwrap();
    let data = files.path().join("data");
    let (d, m) = (data.to_str().unwrap(), mdir.to_str().unwrap());

    // Offline, on the data directory.
    let (ok, out, err) = bkg(&["migrate", "status", "--dir", m, "--data-dir", d], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("20260101000000   pending"), "{out}");
    let (ok, out, err) = bkg(&["migrate", "apply", "--dir", m, "--data-dir", d], &[]);
    assert!(ok, "{err}");
    let builtin = bkg_db::migrate::builtin().len();
    assert!(builtin >= 3, "feature schemas, auth users, the realtime publication");
    assert!(out.contains(&format!("applied {} migration(s)", builtin + 2)), "the built-in ones and two files: {out}");
    let (ok, out, _) = bkg(&["migrate", "apply", "--dir", m, "--data-dir", d], &[]);
    assert!(ok && out.contains("applied 0 migration(s)"), "each file once: {out}");
    // A failing migration rolls back whole; the ones before it stay.
    std::fs::write(
        mdir.join("20260103000000_broken.sql"),
        "INSERT INTO todos VALUES (3, 'third');\nINSERT INTO nope VALUES (1);",
    )
    .unwrap();
    let (ok, _, err) = bkg(&["migrate", "apply", "--dir", m, "--data-dir", d], &[]);
    assert!(!ok && err.contains("20260103000000_broken.sql") && err.contains("42P01"), "{err}");
    std::fs::remove_file(mdir.join("20260103000000_broken.sql")).unwrap();
    // An applied file that was edited is an error.
    std::fs::write(mdir.join("20260102000000_seed.sql"), "INSERT INTO todos VALUES (1, 'changed');").unwrap();
    let (ok, _, err) = bkg(&["migrate", "apply", "--dir", m, "--data-dir", d], &[]);
    assert!(!ok && err.contains("BKG101") && err.contains("20260102000000_seed.sql"), "{err}");
    let (_, out, _) = bkg(&["migrate", "status", "--dir", m, "--data-dir", d], &[]);
    assert!(out.contains("20260102000000   edited"), "{out}");
    std::fs::write(
        mdir.join("20260102000000_seed.sql"),
        "INSERT INTO todos VALUES (1, 'first');\nINSERT INTO todos VALUES (2, 'second');",
    )
    .unwrap();

    // The server on that directory: the command refuses to open it while the server runs, and
    // works over HTTP with the service key instead.
    let mut server = TestServer::start_with(&[("BKG_DB_REST_RATE_PER_S", "0")]);
    server.kill9();
    server.dir = data.clone();
    server.spawn();
    let (ok, _, err) = bkg(&["migrate", "status", "--dir", m, "--data-dir", d], &[]);
    assert!(!ok && err.contains("in use by another bkg-db process"), "{err}");
    let (_, service) = server.api_keys();
    std::fs::write(mdir.join("20260104000000_more.sql"), "INSERT INTO todos VALUES (4, 'fourth');").unwrap();
    let url = format!("http://127.0.0.1:{}", server.http_port);
    let (ok, out, err) = bkg(&["migrate", "apply", "--dir", m, "--url", &url], &[("BKG_DB_SERVICE_KEY", &service)]);
    assert!(ok, "{err}");
    assert!(out.contains("applied 1 migration(s)") && out.contains("20260104000000   applied"), "{out}");
    let c = server.connect().await;
    let n: i64 = c.query_one("SELECT count(*) FROM todos", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    let n: i64 = c.query_one("SELECT count(*) FROM bkg_migrations.schema_migrations", &[]).await.unwrap().get(0);
    assert_eq!(n as usize, builtin + 3, "the built-in migrations and three files");
    // Over HTTP directly: a bad name, an edited file, and the anon key.
    let (anon, _) = server.api_keys();
    let body = r#"{"migrations": [{"name": "init.sql", "sql": "SELECT 1"}]}"#;
    let (status, _, resp) = server.http("POST", "/migrate/apply", &[("apikey", &service)], body.as_bytes());
    assert_eq!((status, resp.contains("BKG102")), (400, true), "{resp}");
    let body = r#"{"migrations": [{"name": "20260104000000_more.sql", "sql": "SELECT 2"}]}"#;
    let (status, _, resp) = server.http("POST", "/migrate/apply", &[("apikey", &service)], body.as_bytes());
    assert_eq!((status, resp.contains("BKG101")), (409, true), "{resp}");
    let (status, _, resp) = server.http("POST", "/migrate/apply", &[("apikey", &anon)], b"");
    assert_eq!((status, resp.contains("42501")), (403, true), "{resp}");
    let (status, _, resp) = server.http("GET", "/migrate/status", &[("apikey", &service)], b"");
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains(r#""state":"missing""#) && resp.contains("feature_schemas"), "{resp}");
}

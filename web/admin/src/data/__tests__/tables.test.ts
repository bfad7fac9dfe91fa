import { afterEach, describe, expect, it, vi } from "vitest";
import { fetchTablesPage } from "@/data/tables";
import { writeSession } from "@/lib/session";

type Handler = (query: string) => Response;

function ok(rows: Record<string, unknown>[]) {
  return new Response(JSON.stringify({ results: [{ command: `SELECT ${rows.length}`, rows }] }), { status: 200 });
}
function denied(table: string) {
  return new Response(JSON.stringify({ code: "42501", message: `permission denied for table ${table}`, details: null, hint: null }), { status: 403 });
}

const CATALOG = [
  { schema: "public", name: "notes", rls_enabled: true, rls_forced: false },
  { schema: "public", name: "secret", rls_enabled: false, rls_forced: false },
];

function serve(handler: Handler) {
  writeSession({ kind: "user", apikey: "anon", token: "a.b.c" });
  const queries: string[] = [];
  vi.stubGlobal(
    "fetch",
    vi.fn(async (_url: string, init?: RequestInit) => {
      const q = (JSON.parse(String(init?.body)) as { query: string }).query;
      queries.push(q);
      return handler(q);
    }),
  );
  return queries;
}

afterEach(() => vi.unstubAllGlobals());

describe("the Overview's table list", () => {
  it("for a user, asks the catalog only for the tables the role may SELECT from", async () => {
    const queries = serve((q) => {
      if (q.includes("count(*) as n from pg_catalog")) return ok([{ n: 1 }]);
      if (q.includes("from pg_catalog")) return ok(q.includes("has_table_privilege") ? [CATALOG[0]!] : CATALOG);
      if (q.includes("secret")) return denied("secret");
      return ok([{ n: 2 }]);
    });
    const page = await fetchTablesPage(1, 10, true);
    expect(queries.filter((q) => q.includes("from pg_catalog")).every((q) => q.includes("has_table_privilege(current_user, c.oid, 'SELECT')"))).toBe(true);
    expect(page).toMatchObject({ total: 1, readableOnly: true, unreadable: 0 });
    expect(page.tables.map((t) => [t.name, t.rows])).toEqual([["notes", 2]]);
  });

  it("without the privilege function, lists every table but folds the refused ones into a count", async () => {
    serve((q) => {
      if (q.includes("has_table_privilege")) return new Response(JSON.stringify({ code: "42883", message: "function has_table_privilege does not exist" }), { status: 400 });
      if (q.includes("count(*) as n from pg_catalog")) return ok([{ n: 2 }]);
      if (q.includes("from pg_catalog")) return ok(CATALOG);
      if (q.includes("secret")) return denied("secret");
      return ok([{ n: 2 }]);
    });
    const page = await fetchTablesPage(1, 10, true);
    expect(page).toMatchObject({ total: 2, readableOnly: false, unreadable: 1 });
    expect(page.tables.map((t) => t.name)).toEqual(["notes"]);
  });

  it("for an operator, lists every table with the refusal on its row", async () => {
    const queries = serve((q) => {
      if (q.includes("count(*) as n from pg_catalog")) return ok([{ n: 2 }]);
      if (q.includes("from pg_catalog")) return ok(CATALOG);
      if (q.includes("secret")) return denied("secret");
      return ok([{ n: 3 }]);
    });
    const page = await fetchTablesPage(1, 10, false);
    expect(queries.some((q) => q.includes("has_table_privilege"))).toBe(false);
    expect(page).toMatchObject({ total: 2, readableOnly: false, unreadable: 0 });
    expect(page.tables.map((t) => [t.name, t.rows, t.rowsError?.code ?? null])).toEqual([
      ["notes", 3, null],
      ["secret", null, "42501"],
    ]);
  });
});

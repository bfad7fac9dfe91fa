import { describe, expect, it } from "vitest";
import { generatePolicy, policySql, quoteIdent, TemplateError, TEMPLATES } from "@/lib/policy-templates";

describe("policy templates", () => {
  it("owner-only: using and with check compare the column with auth.uid()", () => {
    const p = generatePolicy("owner", { table: "public.notes", column: "owner" });
    expect(p).toEqual({
      table: "public.notes",
      name: "notes_owner_all",
      command: "all",
      permissive: true,
      roles: ["authenticated"],
      using: "owner = auth.uid()",
      with_check: "owner = auth.uid()",
    });
    expect(policySql(p)).toBe(
      "CREATE POLICY notes_owner_all ON public.notes\n  FOR ALL\n  TO authenticated\n  USING (owner = auth.uid())\n  WITH CHECK (owner = auth.uid());",
    );
  });

  it("owner-only per command: insert has only WITH CHECK, select only USING", () => {
    const ins = generatePolicy("owner", { table: "notes", column: "owner", command: "insert" });
    expect(ins.using).toBeNull();
    expect(ins.with_check).toBe("owner = auth.uid()");
    const sel = generatePolicy("owner", { table: "notes", column: "owner", command: "select" });
    expect(sel.using).toBe("owner = auth.uid()");
    expect(sel.with_check).toBeNull();
  });

  it("quotes column names that need it", () => {
    expect(quoteIdent("Owner")).toBe('"Owner"');
    expect(quoteIdent("user id")).toBe('"user id"');
    expect(quoteIdent('a"b')).toBe('"a""b"');
    expect(generatePolicy("owner", { table: "t", column: "OwnerId" }).using).toBe('"OwnerId" = auth.uid()');
  });

  it("read templates select every row for their roles", () => {
    const pub = generatePolicy("public-read", { table: "public.posts" });
    expect(pub).toMatchObject({ command: "select", using: "true", with_check: null, roles: ["anon", "authenticated"], name: "posts_public_read" });
    const auth = generatePolicy("authenticated-read", { table: "posts", roles: ["staff"] });
    expect(auth).toMatchObject({ roles: ["staff"], using: "true" });
  });

  it("custom needs a name and an expression; names and roles override", () => {
    expect(() => generatePolicy("custom", { table: "t", using: "true" })).toThrow(TemplateError);
    expect(() => generatePolicy("custom", { table: "t", name: "n" })).toThrow(/USING or a WITH CHECK/);
    const p = generatePolicy("custom", { table: "t", name: "n", using: "a > 1", command: "update" });
    expect(p).toMatchObject({ name: "n", using: "a > 1", with_check: null, roles: ["public"], command: "update" });
    expect(policySql({ ...p, permissive: false })).toContain("AS RESTRICTIVE");
  });

  it("refuses an empty table or owner column", () => {
    expect(() => generatePolicy("owner", { table: " ", column: "owner" })).toThrow(/table/);
    expect(() => generatePolicy("owner", { table: "t" })).toThrow(/owner column/);
  });

  it("every template is listed with a description", () => {
    expect(TEMPLATES.map((t) => t.id)).toEqual(["owner", "public-read", "authenticated-read", "admin-claim", "custom"]);
    for (const t of TEMPLATES) expect(t.description.length).toBeGreaterThan(10);
  });
});

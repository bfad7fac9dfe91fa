import { QueryClientProvider } from "@tanstack/react-query";
import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { makeQueryClient } from "@/data/query-client";
import { writeSession } from "@/lib/session";

vi.mock("next/navigation", () => ({ useRouter: () => ({ replace: vi.fn(), push: vi.fn() }), usePathname: () => "/policies/" }));

import PoliciesPage from "@/app/(dashboard)/policies/page";

function b64(o: unknown) {
  return btoa(JSON.stringify(o)).replace(/=+$/, "");
}

const POLICIES = Array.from({ length: 12 }, (_, i) => ({
  table: i < 9 ? "public.notes" : "public.todos",
  name: `p${String(i + 1).padStart(2, "0")}`,
  command: "all",
  permissive: true,
  roles: ["public"],
  using: "true",
  with_check: null,
}));

/** A /policy that pages and filters like the server's, with x-total-count. */
function policyResponse(url: string): Response {
  const q = new URL(url, "http://x").searchParams;
  const table = q.get("table");
  const all = POLICIES.filter((p) => !table || p.table === table);
  const offset = Number(q.get("offset") ?? 0);
  const limit = q.has("limit") ? Number(q.get("limit")) : all.length;
  return new Response(JSON.stringify(all.slice(offset, offset + limit)), { status: 200, headers: { "x-total-count": String(all.length) } });
}

function renderAs(claims: Record<string, unknown>, whoami: Record<string, unknown>) {
  const token = `${b64({ alg: "HS256" })}.${b64(claims)}.sig`;
  writeSession({ kind: claims.role === "service_role" ? "service" : "user", apikey: "anon", token });
  const calls: string[] = [];
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string, init?: RequestInit) => {
      calls.push(`${init?.method} ${url}`);
      if (url === "/admin/whoami") return new Response(JSON.stringify(whoami), { status: 200 });
      if (url === "/query")
        return new Response(JSON.stringify({ results: [{ command: "SELECT 2", rows: [{ schema: "public", name: "notes" }, { schema: "public", name: "todos" }] }] }), { status: 200 });
      if (url === "/policy" || url.startsWith("/policy?")) return policyResponse(url);
      return new Response(JSON.stringify({ code: "PGRST125", message: "no" }), { status: 404 });
    }),
  );
  render(
    <QueryClientProvider client={makeQueryClient()}>
      <PoliciesPage />
    </QueryClientProvider>,
  );
  return calls;
}

describe("Policies page follows the principal", () => {
  it("a user sees the controls disabled with the reason, and the policy list is not even requested", async () => {
    const calls = renderAs({ role: "authenticated", sub: "u1" }, { role: "authenticated", user_id: "u1", email: "a@b.c", admin: false });
    await waitFor(() => expect(screen.getByText("The policy list is hidden")).toBeInTheDocument());
    expect(screen.getByRole("button", { name: /new policy/i })).toBeDisabled();
    expect(screen.getAllByText(/needs the service role or the admin scope/).length).toBeGreaterThan(0);
    expect(calls.filter((c) => c.startsWith("GET /policy"))).toEqual([]);
    vi.unstubAllGlobals();
  });

  it("the service role gets the list and the explain form", async () => {
    renderAs({ role: "service_role" }, { role: "service_role", user_id: null, email: null, admin: true, service_role: true });
    await screen.findByText("p01");
    await waitFor(() => expect(screen.getByRole("button", { name: /new policy/i })).toBeEnabled());
    expect(screen.getByRole("button", { name: /^explain$/i })).toBeInTheDocument();
    vi.unstubAllGlobals();
  });

  it("pages and filters by table on the server", async () => {
    const calls = renderAs({ role: "service_role" }, { role: "service_role", user_id: null, email: null, admin: true, service_role: true });
    await screen.findByText("p01");
    expect(calls).toContain("GET /policy?limit=10&offset=0");
    expect(screen.getByText("Page 1 of 2 · 12 policies")).toBeInTheDocument();
    expect(screen.queryByText("p11")).not.toBeInTheDocument();
    fireEvent.click(screen.getByRole("button", { name: /next/i }));
    await screen.findByText("p11");
    expect(calls).toContain("GET /policy?limit=10&offset=10");
    expect(screen.queryByText("p01")).not.toBeInTheDocument();
    await waitFor(() => expect(screen.getAllByRole("option", { name: "public.todos" }).length).toBeGreaterThan(0));
    fireEvent.change(screen.getByLabelText("Table", { selector: "#policy-filter" }), { target: { value: "public.todos" } });
    await waitFor(() => expect(screen.getByText("Page 1 of 1 · 3 policies")).toBeInTheDocument());
    expect(calls).toContain("GET /policy?table=public.todos&limit=10&offset=0");
    expect(screen.getByText("p10")).toBeInTheDocument();
    expect(screen.queryByText("p02")).not.toBeInTheDocument();
    vi.unstubAllGlobals();
  });
});

import { QueryClientProvider } from "@tanstack/react-query";
import { render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { makeQueryClient } from "@/data/query-client";
import { writeSession } from "@/lib/session";

vi.mock("next/navigation", () => ({ useRouter: () => ({ replace: vi.fn(), push: vi.fn() }), usePathname: () => "/policies/" }));

import PoliciesPage from "@/app/(dashboard)/policies/page";

function b64(o: unknown) {
  return btoa(JSON.stringify(o)).replace(/=+$/, "");
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
      if (url === "/query") return new Response(JSON.stringify({ results: [{ command: "SELECT 1", rows: [{ schema: "public", name: "notes" }] }] }), { status: 200 });
      if (url === "/policy") return new Response(JSON.stringify([{ table: "public.notes", name: "p1", command: "all", permissive: true, roles: ["public"], using: "true", with_check: null }]), { status: 200 });
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
    expect(calls).not.toContain("GET /policy");
    vi.unstubAllGlobals();
  });

  it("the service role gets the list and the explain form", async () => {
    renderAs({ role: "service_role" }, { role: "service_role", user_id: null, email: null, admin: true, service_role: true });
    await screen.findByText("p1");
    await waitFor(() => expect(screen.getByRole("button", { name: /new policy/i })).toBeEnabled());
    expect(screen.getByRole("button", { name: /^explain$/i })).toBeInTheDocument();
    vi.unstubAllGlobals();
  });
});

import { describe, expect, it, vi } from "vitest";
import { ApiClient, createApi, ApiError } from "@/lib/api";
import { buildQuery } from "@/lib/api/client";
import { errorFromBody } from "@/lib/api/errors";
import { fillPath } from "@/lib/api/endpoints";

function jsonResponse(status: number, body: unknown, headers: Record<string, string> = {}) {
  return new Response(typeof body === "string" ? body : JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function clientWith(fetchImpl: typeof fetch, onUnauthorized = vi.fn()) {
  const client = new ApiClient({
    getCredentials: () => ({ apikey: "AK", token: "TOK" }),
    fetch: fetchImpl,
    onUnauthorized,
  });
  return { client, api: createApi(client), onUnauthorized };
}

describe("API client", () => {
  it("sends apikey and bearer headers, JSON body, and the method of the endpoint", async () => {
    const fetchMock = vi.fn(async (_url: RequestInfo | URL, _init?: RequestInit) => jsonResponse(200, { sampling_rate: 0.25 }));
    const { api } = clientWith(fetchMock as unknown as typeof fetch);
    await api.telemetry.setSamplingRate(0.25);
    const [url, init] = fetchMock.mock.calls[0] as [string, RequestInit];
    expect(url).toBe("/admin/telemetry");
    expect(init.method).toBe("PUT");
    const h = init.headers as Record<string, string>;
    expect(h.apikey).toBe("AK");
    expect(h.authorization).toBe("Bearer TOK");
    expect(JSON.parse(init.body as string)).toEqual({ sampling_rate: 0.25 });
  });

  it("turns a REST error into an ApiError with code, message, details and hint", async () => {
    const { api } = clientWith((async () =>
      jsonResponse(400, { code: "42703", message: 'column "nope" does not exist', details: "d", hint: "h" })) as unknown as typeof fetch);
    const err = await api.policies.create({ table: "notes", name: "x" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    expect(e.status).toBe(400);
    expect(e.code).toBe("42703");
    expect(e.message).toBe('column "nope" does not exist');
    expect(e.details).toBe("d");
    expect(e.hint).toBe("h");
    expect(e.method).toBe("POST");
    expect(e.path).toBe("/policy");
  });

  it("turns a GoTrue error ({code, error_code, msg}) into error_code + msg", async () => {
    const { api } = clientWith((async () =>
      jsonResponse(400, { code: 400, error_code: "invalid_credentials", msg: "Invalid login credentials" })) as unknown as typeof fetch);
    const e = (await api.auth.signInWithPassword("a@b.c", "x", "anon").catch((x: unknown) => x)) as ApiError;
    expect(e.code).toBe("invalid_credentials");
    expect(e.message).toBe("Invalid login credentials");
    expect(e.path).toBe("/auth/v1/token?grant_type=password");
  });

  it("sign-in sends the anon key, not the session's credentials", async () => {
    const fetchMock = vi.fn(async () => jsonResponse(200, { access_token: "T", refresh_token: "R", user: { id: "u" } }));
    const { api } = clientWith(fetchMock as unknown as typeof fetch);
    await api.auth.signInWithPassword("a@b.c", "pw", "ANON");
    const init = (fetchMock.mock.calls[0] as unknown as [string, RequestInit])[1];
    expect((init.headers as Record<string, string>).apikey).toBe("ANON");
  });

  it("reports a missing endpoint (PGRST125 404)", async () => {
    const { api } = clientWith((async () =>
      jsonResponse(404, { code: "PGRST125", message: "Invalid path specified in request URL: /admin/whoami" })) as unknown as typeof fetch);
    const e = (await api.system.whoami().catch((x: unknown) => x)) as ApiError;
    expect(e.isMissingEndpoint).toBe(true);
  });

  it("handles non-JSON error bodies and network failures", async () => {
    const text = clientWith((async () => new Response("upstream exploded", { status: 502, statusText: "Bad Gateway" })) as unknown as typeof fetch);
    const e1 = (await text.api.telemetry.get().catch((x: unknown) => x)) as ApiError;
    expect(e1.code).toBe("HTTP_502");
    expect(e1.message).toBe("upstream exploded");

    const down = clientWith((async () => {
      throw new TypeError("Failed to fetch");
    }) as unknown as typeof fetch);
    const e2 = (await down.api.telemetry.get().catch((x: unknown) => x)) as ApiError;
    expect(e2.code).toBe("NETWORK");
    expect(e2.status).toBe(0);
    expect(e2.message).toContain("Failed to fetch");
  });

  it("calls onUnauthorized on a 401 with the session's credentials", async () => {
    const { api, onUnauthorized } = clientWith((async () =>
      jsonResponse(401, { code: "PGRST301", message: "JWT expired" })) as unknown as typeof fetch);
    await expect(api.policies.list()).rejects.toMatchObject({ code: "PGRST301", status: 401 });
    expect(onUnauthorized).toHaveBeenCalledOnce();
  });

  it("refreshes once on a 401 and retries with the new credentials", async () => {
    const seen: string[] = [];
    const fetchMock = vi.fn(async (_url: RequestInfo | URL, init?: RequestInit) => {
      const auth = (init?.headers as Record<string, string>).authorization ?? "";
      seen.push(auth);
      return auth === "Bearer NEW" ? jsonResponse(200, []) : jsonResponse(401, { code: "PGRST301", message: "JWT expired" });
    });
    const onUnauthorized = vi.fn();
    const refresh = vi.fn(async () => ({ apikey: "AK", token: "NEW" }));
    const client = new ApiClient({ getCredentials: () => ({ apikey: "AK", token: "OLD" }), fetch: fetchMock as unknown as typeof fetch, refresh, onUnauthorized });
    await expect(createApi(client).policies.list()).resolves.toEqual({ policies: [], total: 0 });
    expect(seen).toEqual(["Bearer OLD", "Bearer NEW"]);
    expect(refresh).toHaveBeenCalledOnce();
    expect(onUnauthorized).not.toHaveBeenCalled();

    const failing = new ApiClient({
      getCredentials: () => ({ apikey: "AK", token: "OLD" }),
      fetch: (async () => jsonResponse(401, { code: "PGRST301", message: "JWT expired" })) as unknown as typeof fetch,
      refresh: async () => null,
      onUnauthorized,
    });
    await expect(createApi(failing).policies.list()).rejects.toMatchObject({ status: 401 });
    expect(onUnauthorized).toHaveBeenCalledOnce();
  });

  it("reads x-total-count for the users page and encodes path parameters", async () => {
    const fetchMock = vi.fn(async (url: RequestInfo | URL) =>
      String(url).startsWith("/auth/v1/admin/users?")
        ? jsonResponse(200, { users: [{ id: "1" }] }, { "x-total-count": "41" })
        : jsonResponse(200, {}),
    );
    const { api } = clientWith(fetchMock as unknown as typeof fetch);
    const page = await api.users.list({ page: 2, perPage: 20, filter: "ex" });
    expect(page.total).toBe(41);
    expect(String(fetchMock.mock.calls[0]?.[0])).toBe("/auth/v1/admin/users?page=2&per_page=20&filter=ex");
    await api.policies.remove("public.notes", "a b/c");
    expect(String(fetchMock.mock.calls[1]?.[0])).toBe("/policy/public.notes/a%20b%2Fc");
  });

  it("pages policies on the server: table, limit and offset in the query, the total from x-total-count", async () => {
    const p = { table: "public.notes", name: "p1", command: "all", permissive: true, roles: ["public"], using: "true", with_check: null };
    const fetchMock = vi.fn(async (url: RequestInfo | URL) =>
      String(url).startsWith("/policy?") ? jsonResponse(200, [p], { "x-total-count": "23" }) : jsonResponse(200, [p, p]),
    );
    const { api } = clientWith(fetchMock as unknown as typeof fetch);
    await expect(api.policies.list({ table: "public.notes", limit: 10, offset: 20 })).resolves.toEqual({ policies: [p], total: 23 });
    expect(String(fetchMock.mock.calls[0]?.[0])).toBe("/policy?table=public.notes&limit=10&offset=20");
    // Without paging options (or without the header) every policy comes back and the total is their count.
    await expect(api.policies.list()).resolves.toEqual({ policies: [p, p], total: 2 });
    expect(String(fetchMock.mock.calls[1]?.[0])).toBe("/policy");
  });

  it("buildQuery skips empty values; fillPath insists on every parameter", () => {
    expect(buildQuery({ a: 1, b: "", c: undefined, d: null, e: "x y" })).toBe("?a=1&e=x+y");
    expect(buildQuery({})).toBe("");
    expect(() => fillPath("/x/{id}", {})).toThrow(/missing path parameter "id"/);
  });

  it("errorFromBody falls back to the HTTP status", () => {
    const e = errorFromBody(403, null, "GET", "/audit", "Forbidden");
    expect(e.code).toBe("HTTP_403");
    expect(e.message).toBe("Forbidden");
    expect(e.isForbidden).toBe(true);
  });
});

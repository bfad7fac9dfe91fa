import { ApiClient, type Credentials } from "./client";
import type {
  AuditFilter,
  AuditKey,
  AuditPage,
  AuditVerify,
  AuthUser,
  Bootstrap,
  ExplainRequest,
  ExplainResponse,
  Health,
  KeysInfo,
  MetricsHistory,
  NewPolicy,
  NewUser,
  Overview,
  PoliciesPage,
  Policy,
  PolicyListOptions,
  PolicyPatch,
  QueryResponse,
  RotatedApiKeys,
  SlowStatements,
  Telemetry,
  TokenResponse,
  UserSession,
  UsersPage,
  UserUpdate,
  WhoAmI,
} from "./types";
import { clearSession, readSession, sessionCredentials, writeSession } from "../session";

export { ApiClient } from "./client";
export type { Credentials } from "./client";
export { ApiError, toApiError } from "./errors";
export * from "./types";

/** Splits `schema.table` for the `/policy/{table}/{name}` paths (which take the qualified name). */
function policyParams(table: string, name: string) {
  return { table, name };
}

/** The typed API of bkg-db, over one client. */
export function createApi(client: ApiClient) {
  return {
    system: {
      health: async () => (await client.request<Health>("healthz", { auth: null })).data,
      metricsText: async () => (await client.request<string>("metrics")).data,
      bootstrap: async () => (await client.request<Bootstrap>("bootstrap", { auth: null })).data,
      whoami: async (auth?: Credentials) =>
        (await client.request<WhoAmI>("whoami", auth ? { auth } : {})).data,
      overview: async () => (await client.request<Overview>("overview")).data,
      metricsHistory: async () => (await client.request<MetricsHistory>("metricsHistory")).data,
      slowStatements: async (limit: number) =>
        (await client.request<SlowStatements>("slowStatements", { query: { limit } })).data,
      query: async (query: string, params?: unknown[], auth?: Credentials) =>
        (
          await client.request<QueryResponse>("query", {
            body: params ? { query, params } : { query },
            ...(auth ? { auth } : {}),
          })
        ).data,
    },
    telemetry: {
      get: async () => (await client.request<Telemetry>("telemetryGet")).data,
      setSamplingRate: async (sampling_rate: number) =>
        (await client.request<Telemetry>("telemetryPut", { body: { sampling_rate } })).data,
    },
    keys: {
      list: async () => (await client.request<KeysInfo>("keysList")).data,
      rotate: async () => (await client.request<{ kid: string }>("keysRotate", { body: {} })).data,
      retire: async (kid: string) =>
        (await client.request<unknown>("keysRetire", { params: { kid }, body: {} })).data,
      rotateApiKeys: async () =>
        (await client.request<RotatedApiKeys>("keysRotateApiKeys", { body: {} })).data,
    },
    policies: {
      /** One page of policies (ordered by schema, table, name); every policy without `limit`. */
      list: async (opts: PolicyListOptions = {}): Promise<PoliciesPage> => {
        const res = await client.request<Policy[]>("policyList", {
          query: { table: opts.table, limit: opts.limit, offset: opts.offset },
        });
        const policies = Array.isArray(res.data) ? res.data : [];
        const total = Number(res.headers.get("x-total-count") ?? policies.length);
        return { policies, total: Number.isFinite(total) ? total : policies.length };
      },
      get: async (table: string, name: string) =>
        (await client.request<Policy>("policyGet", { params: policyParams(table, name) })).data,
      create: async (p: NewPolicy) => (await client.request<Policy>("policyCreate", { body: p })).data,
      update: async (table: string, name: string, patch: PolicyPatch) =>
        (await client.request<Policy>("policyUpdate", { params: policyParams(table, name), body: patch })).data,
      remove: async (table: string, name: string) =>
        (await client.request<unknown>("policyDelete", { params: policyParams(table, name) })).data,
      explain: async (req: ExplainRequest) =>
        (await client.request<ExplainResponse>("policyExplain", { body: req })).data,
    },
    audit: {
      list: async (opts: AuditFilter & { limit: number; before?: number | null }) =>
        (
          await client.request<AuditPage>("auditList", {
            query: {
              limit: opts.limit,
              before: opts.before ?? undefined,
              action: opts.action,
              actor: opts.actor,
              outcome: opts.outcome,
              since: opts.since,
              until: opts.until,
            },
          })
        ).data,
      key: async () => (await client.request<AuditKey>("auditKey")).data,
      seal: async () => (await client.request<unknown>("auditSeal", { body: {} })).data,
      verify: async () => (await client.request<AuditVerify>("auditVerify")).data,
    },
    auth: {
      signInWithPassword: async (email: string, password: string, anonKey: string) =>
        (
          await client.request<TokenResponse>("signIn", {
            query: { grant_type: "password" },
            body: { email, password },
            auth: { apikey: anonKey, token: anonKey },
          })
        ).data,
      signOut: async () => {
        await client.request<unknown>("signOut", { body: {} });
      },
      currentUser: async () => (await client.request<AuthUser>("currentUser")).data,
    },
    users: {
      list: async (opts: { page: number; perPage: number; filter?: string }): Promise<UsersPage> => {
        const res = await client.request<{ users: AuthUser[] }>("usersList", {
          query: { page: opts.page, per_page: opts.perPage, filter: opts.filter },
        });
        const total = Number(res.headers.get("x-total-count") ?? res.data.users.length);
        return { users: res.data.users, total: Number.isFinite(total) ? total : res.data.users.length };
      },
      get: async (id: string) => (await client.request<AuthUser>("usersGet", { params: { id } })).data,
      create: async (u: NewUser) => (await client.request<AuthUser>("usersCreate", { body: u })).data,
      update: async (id: string, u: UserUpdate) =>
        (await client.request<AuthUser>("usersUpdate", { params: { id }, body: u })).data,
      remove: async (id: string) => (await client.request<unknown>("usersDelete", { params: { id } })).data,
      sessions: async (id: string) =>
        (await client.request<{ sessions: UserSession[] }>("userSessions", { params: { id } })).data,
      signOutEverywhere: async (id: string) =>
        (await client.request<unknown>("userSessionsDelete", { params: { id } })).data,
    },
  };
}

export type Api = ReturnType<typeof createApi>;

let refreshing: Promise<Credentials | null> | null = null;

/** Trades a user session's refresh token for a new access token (once, however many calls wait). */
function refreshSession(client: ApiClient): Promise<Credentials | null> {
  refreshing ??= (async () => {
    const s = readSession();
    if (!s || s.kind !== "user" || !s.refreshToken) return null;
    try {
      const t = (
        await client.request<TokenResponse>("signIn", {
          query: { grant_type: "refresh_token" },
          body: { refresh_token: s.refreshToken },
          auth: { apikey: s.apikey, token: s.apikey },
        })
      ).data;
      writeSession({ ...s, token: t.access_token, refreshToken: t.refresh_token });
      return { apikey: s.apikey, token: t.access_token };
    } catch {
      return null;
    }
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

const client: ApiClient = new ApiClient({
  getCredentials: sessionCredentials,
  refresh: () => refreshSession(client),
  onUnauthorized: () => clearSession(),
});

/** The app's single client: same origin, credentials from the session; a 401 refreshes a user's token once, else ends the session. */
export const api: Api = createApi(client);

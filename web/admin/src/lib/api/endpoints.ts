/**
 * Every (method, path) the admin UI calls. Paths are written exactly as in the
 * server's OpenAPI document (`/openapi.json`), so `openapi.test.ts` can check them.
 */
export const ENDPOINTS = {
  healthz: { method: "GET", path: "/healthz" },
  metrics: { method: "GET", path: "/metrics" },
  query: { method: "POST", path: "/query" },

  bootstrap: { method: "GET", path: "/admin/bootstrap" },
  whoami: { method: "GET", path: "/admin/whoami" },
  overview: { method: "GET", path: "/admin/overview" },
  metricsHistory: { method: "GET", path: "/admin/metrics/history" },
  slowStatements: { method: "GET", path: "/admin/statements/slow" },
  telemetryGet: { method: "GET", path: "/admin/telemetry" },
  telemetryPut: { method: "PUT", path: "/admin/telemetry" },

  keysList: { method: "GET", path: "/admin/keys" },
  keysRotate: { method: "POST", path: "/admin/keys/rotate" },
  keysRetire: { method: "POST", path: "/admin/keys/{kid}/retire" },
  keysRotateApiKeys: { method: "POST", path: "/admin/keys/rotate-api-keys" },

  policyList: { method: "GET", path: "/policy" },
  policyCreate: { method: "POST", path: "/policy" },
  policyGet: { method: "GET", path: "/policy/{table}/{name}" },
  policyUpdate: { method: "PATCH", path: "/policy/{table}/{name}" },
  policyDelete: { method: "DELETE", path: "/policy/{table}/{name}" },
  policyExplain: { method: "POST", path: "/policy/explain" },

  auditList: { method: "GET", path: "/audit" },
  auditKey: { method: "GET", path: "/audit/key" },
  auditSeal: { method: "POST", path: "/audit/seal" },
  auditVerify: { method: "GET", path: "/audit/verify" },

  signIn: { method: "POST", path: "/auth/v1/token" },
  currentUser: { method: "GET", path: "/auth/v1/user" },
  signOut: { method: "POST", path: "/auth/v1/logout" },
  usersList: { method: "GET", path: "/auth/v1/admin/users" },
  usersCreate: { method: "POST", path: "/auth/v1/admin/users" },
  usersGet: { method: "GET", path: "/auth/v1/admin/users/{id}" },
  usersUpdate: { method: "PUT", path: "/auth/v1/admin/users/{id}" },
  usersDelete: { method: "DELETE", path: "/auth/v1/admin/users/{id}" },
  userSessions: { method: "GET", path: "/auth/v1/admin/users/{id}/sessions" },
  userSessionsDelete: { method: "DELETE", path: "/auth/v1/admin/users/{id}/sessions" },
} as const satisfies Record<string, { method: HttpMethod; path: string }>;

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
export type EndpointName = keyof typeof ENDPOINTS;

/** Fills `{name}` placeholders, URL-encoding each value. */
export function fillPath(template: string, params: Record<string, string> = {}): string {
  return template.replace(/\{([^}]+)\}/g, (_, key: string) => {
    const v = params[key];
    if (v === undefined) throw new Error(`missing path parameter "${key}" for ${template}`);
    return encodeURIComponent(v);
  });
}

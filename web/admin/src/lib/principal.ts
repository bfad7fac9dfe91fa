import { decodeJwtPayload } from "./jwt";
import type { WhoAmI } from "./api/types";

export interface Principal {
  role: string;
  userId: string | null;
  email: string | null;
  admin: boolean;
  serviceRole: boolean;
  /** Where the facts come from: the server's /admin/whoami, or the token's own claims. */
  source: "whoami" | "token";
}

function hasAdminScope(claims: Record<string, unknown>): boolean {
  const scope = claims.scope;
  const scopes = typeof scope === "string" ? scope.split(/\s+/) : Array.isArray(scope) ? scope : [];
  if (scopes.includes("admin")) return true;
  const app = claims.app_metadata;
  if (app && typeof app === "object") {
    const a = app as Record<string, unknown>;
    if (a.admin === true) return true;
    if (Array.isArray(a.scopes) && a.scopes.includes("admin")) return true;
  }
  return false;
}

/** The principal as the server reports it, or, where /admin/whoami is missing, from the token's claims. */
export function principalFrom(token: string, whoami?: WhoAmI | null): Principal {
  if (whoami) {
    return {
      role: whoami.role,
      userId: whoami.user_id ?? null,
      email: whoami.email ?? null,
      admin: whoami.admin || whoami.service_role === true || whoami.role === "service_role",
      serviceRole: whoami.service_role ?? whoami.role === "service_role",
      source: "whoami",
    };
  }
  const claims = decodeJwtPayload(token) ?? {};
  const role = typeof claims.role === "string" ? claims.role : "anon";
  const serviceRole = role === "service_role";
  return {
    role,
    userId: typeof claims.sub === "string" ? claims.sub : null,
    email: typeof claims.email === "string" ? claims.email : null,
    admin: serviceRole || hasAdminScope(claims),
    serviceRole,
    source: "token",
  };
}

export const REASON_ADMIN = "needs the service role or the admin scope";
export const REASON_SERVICE = "needs the service role";

export interface Capability {
  allowed: boolean;
  /** Why not, shown next to the hidden or disabled control. */
  reason: string | null;
}

export type CapabilityName =
  | "overview.server"
  | "tables.list"
  | "policies.read"
  | "policies.write"
  | "policies.explain"
  | "users.read"
  | "users.write"
  | "telemetry.read"
  | "telemetry.write"
  | "metrics.read"
  | "audit.read"
  | "audit.seal"
  | "keys.manage";

const NEEDS: Record<CapabilityName, "any" | "admin" | "service"> = {
  "overview.server": "admin",
  "tables.list": "any",
  "policies.read": "admin",
  "policies.write": "admin",
  "policies.explain": "admin",
  "users.read": "service",
  "users.write": "service",
  "telemetry.read": "admin",
  "telemetry.write": "admin",
  "metrics.read": "admin",
  "audit.read": "admin",
  "audit.seal": "admin",
  "keys.manage": "service",
};

export type Capabilities = Record<CapabilityName, Capability>;

/** What the principal may do in the UI; mirrors the server's checks (the server decides). */
export function capabilitiesFor(p: Principal | null): Capabilities {
  const out = {} as Capabilities;
  for (const [name, need] of Object.entries(NEEDS) as [CapabilityName, (typeof NEEDS)[CapabilityName]][]) {
    if (!p) {
      out[name] = { allowed: false, reason: "sign in first" };
    } else if (need === "any") {
      out[name] = { allowed: true, reason: null };
    } else if (need === "admin") {
      out[name] = p.admin ? { allowed: true, reason: null } : { allowed: false, reason: REASON_ADMIN };
    } else {
      out[name] = p.serviceRole ? { allowed: true, reason: null } : { allowed: false, reason: REASON_SERVICE };
    }
  }
  return out;
}

import type { Credentials } from "./api/client";

/** What is kept in sessionStorage (this tab only) for the signed-in principal. */
export interface Session {
  kind: "service" | "user";
  apikey: string;
  token: string;
  refreshToken?: string;
  email?: string | null;
}

const KEY = "bkg-admin-session";
const listeners = new Set<() => void>();
let cached: { raw: string | null; value: Session | null } = { raw: null, value: null };

function storage(): Storage | null {
  try {
    return typeof window === "undefined" ? null : window.sessionStorage;
  } catch {
    return null;
  }
}

export function readSession(): Session | null {
  const raw = storage()?.getItem(KEY) ?? null;
  if (raw === cached.raw) return cached.value;
  let value: Session | null = null;
  if (raw) {
    try {
      const v = JSON.parse(raw) as Partial<Session>;
      if ((v.kind === "service" || v.kind === "user") && typeof v.apikey === "string" && typeof v.token === "string") {
        value = v as Session;
      }
    } catch {
      value = null;
    }
  }
  cached = { raw, value };
  return value;
}

export function writeSession(s: Session): void {
  storage()?.setItem(KEY, JSON.stringify(s));
  listeners.forEach((l) => l());
}

export function clearSession(): void {
  storage()?.removeItem(KEY);
  listeners.forEach((l) => l());
}

export function subscribeSession(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function sessionCredentials(): Credentials | null {
  const s = readSession();
  return s ? { apikey: s.apikey, token: s.token } : null;
}

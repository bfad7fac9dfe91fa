"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useSyncExternalStore } from "react";
import { api, ApiError } from "@/lib/api";
import { clearSession, readSession, subscribeSession, writeSession, type Session } from "@/lib/session";
import { capabilitiesFor, principalFrom, type Capabilities, type Principal } from "@/lib/principal";
import { decodeJwtPayload } from "@/lib/jwt";

export const sessionKeys = {
  bootstrap: ["bootstrap"] as const,
  whoami: (token: string) => ["whoami", token.slice(-16)] as const,
};

const serverSnapshot = () => null;

/** The session in sessionStorage; `undefined` until the client has read it (first render). */
export function useSession(): Session | null | undefined {
  const hydrated = useSyncExternalStore(
    () => () => {},
    () => true,
    () => false,
  );
  const s = useSyncExternalStore(subscribeSession, readSession, serverSnapshot);
  return hydrated ? s : undefined;
}

export function useBootstrap() {
  return useQuery({ queryKey: sessionKeys.bootstrap, queryFn: api.system.bootstrap, staleTime: Infinity });
}

/** /admin/whoami for the session's token; a missing endpoint (404) is answered with `null`. */
export function useWhoami(session: Session | null | undefined) {
  return useQuery({
    queryKey: sessionKeys.whoami(session?.token ?? ""),
    enabled: !!session,
    staleTime: 60_000,
    queryFn: async () => {
      try {
        return await api.system.whoami();
      } catch (e) {
        if (e instanceof ApiError && e.isMissingEndpoint) return null;
        throw e;
      }
    },
  });
}

export interface PrincipalState {
  session: Session | null | undefined;
  principal: Principal | null;
  caps: Capabilities;
  loading: boolean;
}

export function usePrincipal(): PrincipalState {
  const session = useSession();
  const whoami = useWhoami(session);
  const principal = session ? principalFrom(session.token, whoami.data ?? null) : null;
  return {
    session,
    principal,
    caps: capabilitiesFor(principal),
    loading: session === undefined || (!!session && whoami.isPending),
  };
}

/** Signs in with the service key: checked against the server before it is kept. */
export function useServiceKeySignIn() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: async (key: string) => {
      const k = key.trim();
      const claims = decodeJwtPayload(k);
      if (!claims) throw new ApiError({ status: 0, code: "CLIENT", message: "That is not a JWT (three base64url parts).", method: "", path: "" });
      const creds = { apikey: k, token: k };
      try {
        await api.system.whoami(creds);
      } catch (e) {
        if (!(e instanceof ApiError && e.isMissingEndpoint)) throw e;
        // No /admin/whoami on this server: check the key with a harmless query instead.
        await api.system.query("select 1", undefined, creds);
      }
      const session: Session = { kind: "service", apikey: k, token: k, email: null };
      return session;
    },
    onSuccess: (session) => {
      qc.clear();
      writeSession(session);
    },
  });
}

export function usePasswordSignIn() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: async (v: { email: string; password: string; anonKey: string }) => {
      const t = await api.auth.signInWithPassword(v.email.trim(), v.password, v.anonKey.trim());
      const session: Session = {
        kind: "user",
        apikey: v.anonKey.trim(),
        token: t.access_token,
        refreshToken: t.refresh_token,
        email: t.user?.email ?? v.email.trim(),
      };
      return session;
    },
    onSuccess: (session) => {
      qc.clear();
      writeSession(session);
    },
  });
}

export function useSignOut() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: async () => {
      const s = readSession();
      if (s?.kind === "user") {
        // Best effort: end the refresh token on the server too.
        await api.auth.signOut().catch(() => undefined);
      }
    },
    onSettled: () => {
      clearSession();
      qc.clear();
    },
  });
}

"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "@/lib/api";
import { readSession, writeSession } from "@/lib/session";

export const keyKeys = { list: ["keys"] as const };

export function useSigningKeys(enabled: boolean) {
  return useQuery({ queryKey: keyKeys.list, queryFn: api.keys.list, enabled });
}

export function useRotateSigningKey() {
  const qc = useQueryClient();
  return useMutation({ mutationFn: api.keys.rotate, onSuccess: () => qc.invalidateQueries({ queryKey: keyKeys.list }) });
}

export function useRetireSigningKey() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (kid: string) => api.keys.retire(kid),
    onSuccess: () => qc.invalidateQueries({ queryKey: keyKeys.list }),
  });
}

/** Rotates the anon and service keys; a tab signed in with the service key switches to the new one. */
export function useRotateApiKeys() {
  return useMutation({
    mutationFn: api.keys.rotateApiKeys,
    onSuccess: (keys) => {
      const s = readSession();
      if (s?.kind === "service" && keys.service_key) writeSession({ ...s, apikey: keys.service_key, token: keys.service_key });
    },
  });
}

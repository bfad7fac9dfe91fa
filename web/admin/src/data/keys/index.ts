"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "@/lib/api";

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

export function useRotateApiKeys() {
  return useMutation({ mutationFn: api.keys.rotateApiKeys });
}

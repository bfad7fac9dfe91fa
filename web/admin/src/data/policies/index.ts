"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, type ExplainRequest, type NewPolicy, type PolicyPatch } from "@/lib/api";

export const policyKeys = {
  list: ["policies"] as const,
};

export function usePolicies(enabled: boolean) {
  return useQuery({ queryKey: policyKeys.list, queryFn: api.policies.list, enabled });
}

export function useCreatePolicy() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (p: NewPolicy) => api.policies.create(p),
    onSuccess: () => qc.invalidateQueries({ queryKey: policyKeys.list }),
  });
}

export function useUpdatePolicy() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (v: { table: string; name: string; patch: PolicyPatch }) =>
      api.policies.update(v.table, v.name, v.patch),
    onSuccess: () => qc.invalidateQueries({ queryKey: policyKeys.list }),
  });
}

export function useDeletePolicy() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (v: { table: string; name: string }) => api.policies.remove(v.table, v.name),
    onSuccess: () => qc.invalidateQueries({ queryKey: policyKeys.list }),
  });
}

export function useExplainPolicy() {
  return useMutation({ mutationFn: (req: ExplainRequest) => api.policies.explain(req) });
}

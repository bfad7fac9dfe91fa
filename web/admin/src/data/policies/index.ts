"use client";

import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, type ExplainRequest, type NewPolicy, type PolicyPatch } from "@/lib/api";

export const policyKeys = {
  list: ["policies"] as const,
  page: (table: string, page: number, perPage: number) => ["policies", "page", table, page, perPage] as const,
};

/** One page of policies, paged and filtered by table on the server (`x-total-count` is the total). */
export function usePoliciesPage(table: string, page: number, perPage: number, enabled: boolean) {
  return useQuery({
    queryKey: policyKeys.page(table, page, perPage),
    queryFn: () => api.policies.list({ table: table || undefined, limit: perPage, offset: (page - 1) * perPage }),
    placeholderData: keepPreviousData,
    enabled,
  });
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

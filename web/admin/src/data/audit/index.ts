"use client";

import { keepPreviousData, useMutation, useQuery } from "@tanstack/react-query";
import { api, type AuditFilter } from "@/lib/api";

export const auditKeys = {
  page: (filter: AuditFilter, before: number | null, limit: number) => ["audit", filter, before, limit] as const,
  key: ["audit", "key"] as const,
};

export function useAuditPage(filter: AuditFilter, before: number | null, limit: number, enabled: boolean) {
  return useQuery({
    queryKey: auditKeys.page(filter, before, limit),
    queryFn: () => api.audit.list({ ...filter, before, limit }),
    placeholderData: keepPreviousData,
    enabled,
  });
}

export function useAuditKey(enabled: boolean) {
  return useQuery({ queryKey: auditKeys.key, queryFn: api.audit.key, enabled });
}

export function useVerifyAudit() {
  return useMutation({ mutationFn: () => api.audit.verify() });
}

export function useSealAudit() {
  return useMutation({ mutationFn: () => api.audit.seal() });
}

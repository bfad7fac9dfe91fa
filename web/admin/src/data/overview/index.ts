"use client";

import { useQuery } from "@tanstack/react-query";
import { api } from "@/lib/api";

export const overviewKeys = {
  overview: ["overview"] as const,
  health: ["health"] as const,
};

export function useOverview(enabled: boolean) {
  return useQuery({ queryKey: overviewKeys.overview, queryFn: api.system.overview, enabled, refetchInterval: 10_000 });
}

export function useHealth() {
  return useQuery({ queryKey: overviewKeys.health, queryFn: api.system.health, refetchInterval: 10_000 });
}

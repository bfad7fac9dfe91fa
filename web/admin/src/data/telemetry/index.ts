"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { api, ApiError, type MetricsSample } from "@/lib/api";
import { parsePrometheus, samplesFromScrapes, type Scrape } from "@/lib/metrics";

export const telemetryKeys = {
  settings: ["telemetry"] as const,
  history: ["metrics", "history"] as const,
  slow: (limit: number) => ["metrics", "slow", limit] as const,
};

export function useTelemetry(enabled: boolean) {
  return useQuery({ queryKey: telemetryKeys.settings, queryFn: api.telemetry.get, enabled, refetchInterval: 10_000 });
}

export function useSetSamplingRate() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (rate: number) => api.telemetry.setSamplingRate(rate),
    onSuccess: (data) => qc.setQueryData(telemetryKeys.settings, data),
  });
}

export function useMetricsHistory(enabled: boolean) {
  return useQuery({ queryKey: telemetryKeys.history, queryFn: api.system.metricsHistory, enabled, refetchInterval: 5_000 });
}

export function useSlowStatements(limit: number, enabled: boolean) {
  return useQuery({
    queryKey: telemetryKeys.slow(limit),
    queryFn: () => api.system.slowStatements(limit),
    enabled,
    refetchInterval: 10_000,
  });
}

/**
 * Rates computed in the browser from /metrics scrapes every `intervalMs`: the fallback while the
 * server has no /admin/metrics/history.
 */
export function useScrapedSamples(enabled: boolean, intervalMs = 5_000): { samples: MetricsSample[]; error: ApiError | null } {
  const [scrapes, setScrapes] = useState<Scrape[]>([]);
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => {
    if (!enabled) return;
    let stopped = false;
    const tick = async () => {
      try {
        const text = await api.system.metricsText();
        if (stopped) return;
        setScrapes((prev) => [...prev.slice(-180), { at: Date.now(), values: parsePrometheus(text) }]);
        setError(null);
      } catch (e) {
        if (!stopped && e instanceof ApiError) setError(e);
      }
    };
    void tick();
    const id = setInterval(tick, intervalMs);
    return () => {
      stopped = true;
      clearInterval(id);
    };
  }, [enabled, intervalMs]);
  return { samples: samplesFromScrapes(scrapes), error };
}

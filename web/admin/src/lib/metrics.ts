import type { MetricsSample } from "./api/types";

/** One scrape of /metrics: the sum of each metric over its label sets. */
export interface Scrape {
  /** Milliseconds since the epoch. */
  at: number;
  values: Record<string, number>;
}

/** Parses Prometheus text exposition, summing each metric name over its labels. */
export function parsePrometheus(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const name = m[1] as string;
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    out[name] = (out[name] ?? 0) + value;
  }
  return out;
}

/**
 * Per-second rate of a counter between two scrapes. A counter that went down was reset
 * (the server restarted): the new value is then the increase since the reset.
 */
export function counterRate(prev: number | undefined, next: number | undefined, seconds: number): number {
  if (prev === undefined || next === undefined || !(seconds > 0)) return 0;
  const delta = next >= prev ? next - prev : next;
  return delta / seconds;
}

/** The per-second rates between two scrapes, in the shape of /admin/metrics/history samples. */
export function sampleBetween(prev: Scrape, next: Scrape): MetricsSample {
  const s = (next.at - prev.at) / 1000;
  const r = (name: string) => counterRate(prev.values[name], next.values[name], s);
  return {
    time: new Date(next.at).toISOString(),
    commits_per_s: r("bkg_commits_total"),
    statements_per_s: r("bkg_queries_total"),
    http_requests_per_s: r("bkg_http_requests_total"),
    http_errors_per_s: r("bkg_http_client_errors_total") + r("bkg_http_server_errors_total"),
    http_latency_ms: { p50: null, p95: null, p99: null },
    pgwire_connections: next.values.bkg_pg_connections_active ?? 0,
    realtime_clients: next.values.bkg_realtime_connections ?? 0,
    storage_bytes_in_per_s: r("bkg_storage_upload_bytes_total"),
    storage_bytes_out_per_s: r("bkg_storage_download_bytes_total"),
  };
}

/** Samples from consecutive scrapes (oldest first), at most `max` kept. */
export function samplesFromScrapes(scrapes: Scrape[], max = 180): MetricsSample[] {
  const out: MetricsSample[] = [];
  for (let i = 1; i < scrapes.length; i++) {
    out.push(sampleBetween(scrapes[i - 1] as Scrape, scrapes[i] as Scrape));
  }
  return out.slice(-max);
}

/** Mean of a field over samples (0 when there are none). */
export function mean(samples: MetricsSample[], pick: (s: MetricsSample) => number | null): number {
  const vals = samples.map(pick).filter((v): v is number => v != null && Number.isFinite(v));
  return vals.length ? vals.reduce((a, b) => a + b, 0) / vals.length : 0;
}

/** Error ratio (errors / requests) over a window of samples, in [0, 1]. */
export function errorRatio(samples: MetricsSample[]): number {
  const req = samples.reduce((a, s) => a + s.http_requests_per_s, 0);
  const err = samples.reduce((a, s) => a + s.http_errors_per_s, 0);
  return req > 0 ? Math.min(1, err / req) : 0;
}

/** errors_by_code sorted by count, largest first. */
export function topErrorCodes(byCode: Record<string, number>, n = 8): { code: string; count: number }[] {
  return Object.entries(byCode)
    .map(([code, count]) => ({ code, count }))
    .sort((a, b) => b.count - a.count || a.code.localeCompare(b.code))
    .slice(0, n);
}

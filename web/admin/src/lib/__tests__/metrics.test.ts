import { describe, expect, it } from "vitest";
import { counterRate, errorRatio, mean, parsePrometheus, sampleBetween, samplesFromScrapes, topErrorCodes } from "@/lib/metrics";

const TEXT = `# HELP bkg_commits_total Commits
# TYPE bkg_commits_total counter
bkg_commits_total 100
bkg_queries_total{door="http"} 40
bkg_queries_total{door="pgwire"} 60
bkg_http_requests_total 500
bkg_http_client_errors_total 10
bkg_http_server_errors_total 2
bkg_pg_connections_active 3
bkg_realtime_connections 4
bkg_storage_upload_bytes_total 1024
weird line
bkg_nan NaN
`;

describe("metric rates", () => {
  it("parses Prometheus text, summing label sets and skipping comments", () => {
    const v = parsePrometheus(TEXT);
    expect(v.bkg_commits_total).toBe(100);
    expect(v.bkg_queries_total).toBe(100);
    expect(v.bkg_nan).toBeUndefined();
    expect(Object.keys(v)).not.toContain("weird");
  });

  it("computes per-second counter rates and handles resets", () => {
    expect(counterRate(100, 160, 30)).toBe(2);
    expect(counterRate(100, 10, 5)).toBe(2); // reset: 10 since the restart
    expect(counterRate(undefined, 10, 5)).toBe(0);
    expect(counterRate(1, 10, 0)).toBe(0);
  });

  it("builds samples from two scrapes", () => {
    const a = { at: 0, values: parsePrometheus(TEXT) };
    const b = {
      at: 10_000,
      values: { ...a.values, bkg_commits_total: 150, bkg_queries_total: 300, bkg_http_requests_total: 600, bkg_http_server_errors_total: 12, bkg_storage_upload_bytes_total: 11264 },
    };
    const s = sampleBetween(a, b);
    expect(s.commits_per_s).toBe(5);
    expect(s.statements_per_s).toBe(20);
    expect(s.http_requests_per_s).toBe(10);
    expect(s.http_errors_per_s).toBe(1);
    expect(s.storage_bytes_in_per_s).toBe(1024);
    expect(s.pgwire_connections).toBe(3);
    expect(s.time).toBe(new Date(10_000).toISOString());
    expect(samplesFromScrapes([a, b, { ...b, at: 20_000 }])).toHaveLength(2);
    expect(samplesFromScrapes([a])).toHaveLength(0);
  });

  it("averages, error ratio and top error codes", () => {
    const base = sampleBetween({ at: 0, values: {} }, { at: 1000, values: {} });
    const samples = [
      { ...base, http_requests_per_s: 10, http_errors_per_s: 1, http_latency_ms: { p50: 2, p95: null, p99: null } },
      { ...base, http_requests_per_s: 30, http_errors_per_s: 3, http_latency_ms: { p50: 4, p95: null, p99: null } },
    ];
    expect(mean(samples, (s) => s.http_latency_ms.p50)).toBe(3);
    expect(mean(samples, (s) => s.http_latency_ms.p95)).toBe(0);
    expect(errorRatio(samples)).toBeCloseTo(0.1);
    expect(errorRatio([])).toBe(0);
    expect(topErrorCodes({ "42501": 3, "23505": 7, "42P01": 3 }, 2)).toEqual([
      { code: "23505", count: 7 },
      { code: "42501", count: 3 },
    ]);
  });
});

describe("byte rates", () => {
  it("formats bytes per second in binary units", async () => {
    const { formatByteRate } = await import("@/lib/utils");
    expect(formatByteRate(0)).toBe("0 B/s");
    expect(formatByteRate(1536)).toBe("1.5 KiB/s");
    expect(formatByteRate(5 * 1024 * 1024)).toBe("5.0 MiB/s");
    expect(formatByteRate(null)).toBe("—");
  });
});

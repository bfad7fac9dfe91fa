"use client";

import { useState } from "react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import { Skeleton } from "@/components/ui/skeleton";
import { Table, TableBody, TableCell, TableHead, TableHeader, TableRow } from "@/components/ui/table";
import { ErrorAlert } from "@/components/error-alert";
import { MetricChart } from "@/components/metric-chart";
import { NotAllowed } from "@/components/not-allowed";
import { PageHeader } from "@/components/page-header";
import { useMetricsHistory, useScrapedSamples, useSetSamplingRate, useSlowStatements, useTelemetry } from "@/data/telemetry";
import { usePrincipal } from "@/data/session";
import { ApiError } from "@/lib/api";
import { errorRatio, mean, topErrorCodes } from "@/lib/metrics";
import { formatByteRate, formatNumber, formatTime } from "@/lib/utils";

function ChartBlock({ title, testId, children }: { title: string; testId: string; children: React.ReactNode }) {
  return (
    <section data-testid={testId}>
      <h3 className="mb-1 text-sm font-medium">{title}</h3>
      {children}
    </section>
  );
}

function SamplingCard({ canWrite, reason }: { canWrite: boolean; reason: string | null }) {
  const telemetry = useTelemetry(true);
  const set = useSetSamplingRate();
  const [draft, setDraft] = useState<string | null>(null);
  const value = draft ?? (telemetry.data ? String(telemetry.data.sampling_rate) : "");
  const num = Number(value);
  const valid = value.trim() !== "" && Number.isFinite(num) && num >= 0 && num <= 1;
  const t = telemetry.data;
  return (
    <Card>
      <CardHeader>
        <CardTitle>Tracing</CardTitle>
        <CardDescription>OpenTelemetry export and the share of requests traced.</CardDescription>
      </CardHeader>
      <CardContent className="space-y-4">
        <ErrorAlert error={telemetry.error} />
        {t ? (
          <dl className="grid grid-cols-2 gap-3 text-sm sm:grid-cols-5" data-testid="telemetry-status">
            <div>
              <dt className="text-muted-foreground">Export</dt>
              <dd>{t.enabled ? <Badge variant="success">on</Badge> : <Badge variant="outline">off</Badge>}</dd>
            </div>
            <div>
              <dt className="text-muted-foreground">Sampling rate</dt>
              <dd className="text-lg font-semibold tabular-nums" data-testid="sampling-rate">
                {t.sampling_rate}
              </dd>
            </div>
            <div>
              <dt className="text-muted-foreground">Spans exported</dt>
              <dd className="tabular-nums">{formatNumber(t.spans_exported)}</dd>
            </div>
            <div>
              <dt className="text-muted-foreground">Spans dropped</dt>
              <dd className="tabular-nums">{formatNumber(t.spans_dropped)}</dd>
            </div>
            <div>
              <dt className="text-muted-foreground">Export failures</dt>
              <dd className="tabular-nums">{formatNumber(t.export_failures)}</dd>
            </div>
          </dl>
        ) : telemetry.isPending ? (
          <Skeleton className="h-12 w-full" />
        ) : null}
        <form
          className="flex flex-col gap-3 sm:flex-row sm:items-end"
          onSubmit={(e) => {
            e.preventDefault();
            if (valid) set.mutate(num, { onSuccess: () => setDraft(null) });
          }}
        >
          <div className="flex-1 space-y-1.5">
            <Label htmlFor="sampling-range">Sampling rate (0 = none, 1 = every request)</Label>
            <div className="flex items-center gap-3">
              <input
                id="sampling-range"
                type="range"
                min={0}
                max={1}
                step={0.01}
                value={valid ? num : 0}
                onChange={(e) => setDraft(e.target.value)}
                disabled={!canWrite || !t}
                className="w-full accent-primary"
              />
              <Input
                aria-label="Sampling rate"
                className="w-24"
                inputMode="decimal"
                value={value}
                onChange={(e) => setDraft(e.target.value)}
                disabled={!canWrite || !t}
                data-testid="sampling-input"
              />
            </div>
            {!valid && value ? <p className="text-xs text-destructive">A number from 0 to 1.</p> : null}
          </div>
          <Button type="submit" disabled={!canWrite || !valid || set.isPending || draft === null} data-testid="sampling-save">
            {set.isPending ? "Saving…" : "Apply"}
          </Button>
        </form>
        {!canWrite ? <p className="text-xs text-muted-foreground">Changing the rate {reason}.</p> : null}
        {set.isSuccess && draft === null ? (
          <p className="text-sm text-success" role="status" data-testid="sampling-saved">
            Saved: the sampling rate is now {set.data.sampling_rate} (recorded in the audit log).
          </p>
        ) : null}
        <ErrorAlert error={set.error} title="The server refused the rate" />
      </CardContent>
    </Card>
  );
}

function TrafficCard() {
  const history = useMetricsHistory(true);
  const missing = history.error instanceof ApiError && history.error.isMissingEndpoint;
  const scraped = useScrapedSamples(missing);
  const samples = history.data?.samples ?? (missing ? scraped.samples : []);
  const last = samples.slice(-12);
  return (
    <Card>
      <CardHeader>
        <CardTitle>Traffic</CardTitle>
        <CardDescription>
          {history.data
            ? `Every ${history.data.interval_s}s, the last ${samples.length} samples.`
            : missing
              ? "Computed in this browser from /metrics every 5 s (the server has no /admin/metrics/history)."
              : " "}
        </CardDescription>
      </CardHeader>
      <CardContent className="space-y-4">
        {!missing ? <ErrorAlert error={history.error} /> : <ErrorAlert error={scraped.error} />}
        {history.isPending ? <Skeleton className="h-56 w-full" /> : null}
        <div className="grid grid-cols-2 gap-3 text-sm sm:grid-cols-4" data-testid="traffic-summary">
          <div>
            <p className="text-muted-foreground">Statements/s</p>
            <p className="text-lg font-semibold tabular-nums">{formatNumber(mean(last, (s) => s.statements_per_s), 1)}</p>
          </div>
          <div>
            <p className="text-muted-foreground">Commits/s</p>
            <p className="text-lg font-semibold tabular-nums">{formatNumber(mean(last, (s) => s.commits_per_s), 1)}</p>
          </div>
          <div>
            <p className="text-muted-foreground">HTTP requests/s</p>
            <p className="text-lg font-semibold tabular-nums">{formatNumber(mean(last, (s) => s.http_requests_per_s), 1)}</p>
          </div>
          <div>
            <p className="text-muted-foreground">HTTP errors</p>
            <p className="text-lg font-semibold tabular-nums">{formatNumber(errorRatio(last) * 100, 1)}%</p>
          </div>
        </div>
        <div className="grid gap-4 lg:grid-cols-2">
          <ChartBlock title="Throughput" testId="chart-throughput">
          <MetricChart
            title="Throughput"
            samples={samples}
            unit="/s"
            series={[
              { key: "statements", label: "Statements", pick: (s) => s.statements_per_s },
              { key: "commits", label: "Commits", pick: (s) => s.commits_per_s },
              { key: "http", label: "HTTP requests", pick: (s) => s.http_requests_per_s },
              { key: "errors", label: "HTTP errors", pick: (s) => s.http_errors_per_s },
            ]}
          />
          </ChartBlock>
          {history.data ? (
            <ChartBlock title="HTTP latency (percentiles)" testId="chart-latency">
            <MetricChart
              title="HTTP latency"
              samples={samples}
              unit="ms"
              series={[
                { key: "p50", label: "p50", pick: (s) => s.http_latency_ms.p50 },
                { key: "p95", label: "p95", pick: (s) => s.http_latency_ms.p95 },
                { key: "p99", label: "p99", pick: (s) => s.http_latency_ms.p99 },
              ]}
            />
            </ChartBlock>
          ) : null}
          <ChartBlock title="Connections and realtime clients" testId="chart-connections">
            <MetricChart
              title="Connections and realtime clients"
              samples={samples}
              series={[
                { key: "pg", label: "pgwire", pick: (s) => s.pgwire_connections },
                { key: "http", label: "HTTP", pick: (s) => s.http_connections ?? null },
                { key: "flight", label: "Flight", pick: (s) => s.flight_connections ?? null },
                { key: "rt", label: "realtime clients", pick: (s) => s.realtime_clients },
              ]}
            />
          </ChartBlock>
          <ChartBlock title="Storage traffic" testId="chart-storage">
            <MetricChart
              title="Storage traffic"
              samples={samples}
              format={formatByteRate}
              series={[
                { key: "in", label: "in (uploads)", pick: (s) => s.storage_bytes_in_per_s },
                { key: "out", label: "out (downloads)", pick: (s) => s.storage_bytes_out_per_s },
              ]}
            />
          </ChartBlock>
        </div>
        {history.data ? (
          <div>
            <h3 className="mb-1 text-sm font-medium">Errors by code</h3>
            {topErrorCodes(history.data.errors_by_code).length === 0 ? (
              <p className="text-sm text-muted-foreground">No errors.</p>
            ) : (
              <ul className="flex flex-wrap gap-2">
                {topErrorCodes(history.data.errors_by_code).map((e) => (
                  <li key={e.code}>
                    <Badge variant="outline">
                      <code>{e.code}</code>&nbsp;×{e.count}
                    </Badge>
                  </li>
                ))}
              </ul>
            )}
          </div>
        ) : null}
      </CardContent>
    </Card>
  );
}

function SlowCard() {
  const [limit, setLimit] = useState(20);
  const slow = useSlowStatements(limit, true);
  return (
    <Card>
      <CardHeader>
        <CardTitle>Slow statements</CardTitle>
        <CardDescription>{slow.data ? `Slower than ${slow.data.threshold_ms} ms, newest first.` : " "}</CardDescription>
      </CardHeader>
      <CardContent>
        <ErrorAlert error={slow.error} />
        {slow.data ? (
          slow.data.statements.length === 0 ? (
            <p className="text-sm text-muted-foreground">None.</p>
          ) : (
            <>
              <Table>
                <TableHeader>
                  <TableRow>
                    <TableHead>Time</TableHead>
                    <TableHead className="text-right">ms</TableHead>
                    <TableHead>Door</TableHead>
                    <TableHead>Role</TableHead>
                    <TableHead>Statement</TableHead>
                    <TableHead>SQLSTATE</TableHead>
                  </TableRow>
                </TableHeader>
                <TableBody>
                  {slow.data.statements.map((s, i) => (
                    <TableRow key={`${s.time}-${i}`}>
                      <TableCell className="whitespace-nowrap">{formatTime(s.time)}</TableCell>
                      <TableCell className="text-right tabular-nums">{formatNumber(s.duration_ms, 1)}</TableCell>
                      <TableCell>{s.door}</TableCell>
                      <TableCell>{s.role}</TableCell>
                      <TableCell className="max-w-md break-all font-mono text-xs">{s.statement}</TableCell>
                      <TableCell>{s.sqlstate ?? ""}</TableCell>
                    </TableRow>
                  ))}
                </TableBody>
              </Table>
              {slow.data.statements.length >= limit ? (
                <Button variant="outline" size="sm" className="mt-3" onClick={() => setLimit((l) => l + 20)}>
                  Show more
                </Button>
              ) : null}
            </>
          )
        ) : null}
      </CardContent>
    </Card>
  );
}

export default function TelemetryPage() {
  const { caps } = usePrincipal();
  return (
    <div className="space-y-4">
      <PageHeader title="Telemetry" description="Tracing, traffic and slow statements." />
      {caps["telemetry.read"].allowed ? (
        <>
          <SamplingCard canWrite={caps["telemetry.write"].allowed} reason={caps["telemetry.write"].reason} />
          <TrafficCard />
          <SlowCard />
        </>
      ) : (
        <NotAllowed what="Telemetry is hidden" reason={caps["telemetry.read"].reason} />
      )}
    </div>
  );
}

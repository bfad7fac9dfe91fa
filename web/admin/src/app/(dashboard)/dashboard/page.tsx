"use client";

import { useState } from "react";
import { Badge } from "@/components/ui/badge";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Table, TableBody, TableCell, TableHead, TableHeader, TableRow } from "@/components/ui/table";
import { Skeleton } from "@/components/ui/skeleton";
import { ErrorAlert } from "@/components/error-alert";
import { NotAllowed } from "@/components/not-allowed";
import { PageHeader } from "@/components/page-header";
import { Pagination } from "@/components/pagination";
import { KeysCard } from "@/components/keys-card";
import { useHealth, useOverview } from "@/data/overview";
import { useTablesPage } from "@/data/tables";
import { useMetricsHistory } from "@/data/telemetry";
import { MetricChart } from "@/components/metric-chart";
import { mean } from "@/lib/metrics";
import { usePrincipal } from "@/data/session";
import type { Overview } from "@/lib/api";
import { formatBytes, formatDuration, formatNumber, formatTime } from "@/lib/utils";

function Stat({ label, value, hint }: { label: string; value: React.ReactNode; hint?: React.ReactNode }) {
  return (
    <Card>
      <CardHeader className="pb-2 sm:pb-2">
        <CardDescription>{label}</CardDescription>
        <p className="text-2xl font-semibold tabular-nums">{value}</p>
      </CardHeader>
      {hint ? <CardContent className="text-xs text-muted-foreground">{hint}</CardContent> : null}
    </Card>
  );
}

const DOORS = [
  { key: "pgwire", label: "PostgreSQL wire" },
  { key: "http", label: "HTTP" },
  { key: "flight", label: "Flight" },
  { key: "realtime", label: "Realtime" },
] as const;

/** Open connections per front door. */
function ConnectionsStat({ c }: { c: Overview["connections"] }) {
  const total = DOORS.reduce((a, d) => a + (c[d.key] ?? 0), 0);
  return (
    <Card data-testid="connections">
      <CardHeader className="pb-2 sm:pb-2">
        <CardDescription>Connections</CardDescription>
        <p className="text-2xl font-semibold tabular-nums">{formatNumber(total)}</p>
      </CardHeader>
      <CardContent>
        <dl className="grid grid-cols-2 gap-x-3 gap-y-0.5 text-xs">
          {DOORS.map((d) => (
            <div key={d.key} className="flex justify-between gap-2" data-door={d.key}>
              <dt className="text-muted-foreground">{d.label}</dt>
              <dd className="tabular-nums">{formatNumber(c[d.key])}</dd>
            </div>
          ))}
        </dl>
      </CardContent>
    </Card>
  );
}

/** Commits/s and statements/s over the server's recent history (admins only). */
function ActivityCharts() {
  const history = useMetricsHistory(true);
  const samples = history.data?.samples ?? [];
  const last = samples.slice(-12);
  return (
    <Card data-testid="activity">
      <CardHeader>
        <CardTitle>Activity</CardTitle>
        <CardDescription>
          {history.data ? `Every ${history.data.interval_s}s, the last ${samples.length} samples; more on the Telemetry tab.` : " "}
        </CardDescription>
      </CardHeader>
      <CardContent>
        <ErrorAlert error={history.error} />
        {history.isPending ? (
          <Skeleton className="h-40 w-full" />
        ) : history.data ? (
          <div className="grid gap-4 md:grid-cols-2">
            <section data-testid="chart-commits">
              <h3 className="text-sm font-medium">
                Commits/s <span className="font-normal tabular-nums text-muted-foreground">· avg {formatNumber(mean(last, (s) => s.commits_per_s), 1)}</span>
              </h3>
              <MetricChart small title="Commits per second" samples={samples} unit="/s" series={[{ key: "commits", label: "commits/s", pick: (s) => s.commits_per_s }]} />
            </section>
            <section data-testid="chart-queries">
              <h3 className="text-sm font-medium">
                Queries/s <span className="font-normal tabular-nums text-muted-foreground">· avg {formatNumber(mean(last, (s) => s.statements_per_s), 1)}</span>
              </h3>
              <MetricChart small title="Queries per second" samples={samples} unit="/s" series={[{ key: "statements", label: "statements/s", pick: (s) => s.statements_per_s }]} />
            </section>
          </div>
        ) : null}
      </CardContent>
    </Card>
  );
}

function ServerStats({ o }: { o: Overview }) {
  return (
    <div className="grid grid-cols-1 gap-3 sm:grid-cols-2 lg:grid-cols-4" data-testid="server-stats">
      <Stat label="Version" value={o.version} hint={`Up ${formatDuration(o.uptime_s)} · since ${formatTime(o.started_at)}`} />
      <Stat label="Data directory" value={`${o.data_dir_bytes_partial ? "≥ " : ""}${formatBytes(o.data_dir_bytes)}`} hint={<span className="break-all font-mono">{o.data_dir}</span>} />
      <Stat
        label="WAL"
        value={formatBytes(o.wal_bytes)}
        hint={
          (o.wal_bytes_since_checkpoint != null ? `${formatBytes(o.wal_bytes_since_checkpoint)} since the last checkpoint. ` : "") +
          (o.last_checkpoint ? `Last checkpoint ${formatTime(o.last_checkpoint.at)} (LSN ${o.last_checkpoint.lsn})` : "No checkpoint yet")
        }
      />
      <ConnectionsStat c={o.connections} />
      <Stat
        label="Commits"
        value={formatNumber(o.totals.commits)}
        hint={o.totals.rollbacks != null ? `${formatNumber(o.totals.rollbacks)} rollbacks` : undefined}
      />
      <Stat
        label="Statements"
        value={formatNumber(o.totals.statements)}
        hint={o.totals.statement_errors != null ? `${formatNumber(o.totals.statement_errors)} failed` : undefined}
      />
      <Stat
        label="HTTP requests"
        value={formatNumber(o.totals.http_requests)}
        hint={o.totals.http_errors != null ? `${formatNumber(o.totals.http_errors)} errors` : undefined}
      />
      <Stat
        label="Listeners"
        value={<span className="text-base">HTTP {o.listeners.http ?? "—"}</span>}
        hint={`pgwire ${o.listeners.pgwire ?? "—"} · Flight ${o.listeners.flight ?? "—"}`}
      />
    </div>
  );
}

const PER_PAGE = 10;

function TablesCard({ overview, readableOnly }: { overview: Overview | undefined; readableOnly: boolean }) {
  const [page, setPage] = useState(1);
  const q = useTablesPage(page, PER_PAGE, readableOnly);
  const extra = new Map((overview?.tables ?? []).map((t) => [`${t.schema}.${t.name}`, t]));
  const total = q.data?.total ?? 0;
  const pages = Math.max(1, Math.ceil(total / PER_PAGE));
  return (
    <Card>
      <CardHeader>
        <CardTitle>Tables</CardTitle>
        <CardDescription>
          {q.data?.readableOnly ? "The tables your role may read. " : ""}Row counts are those you can see: row-level security applies to your
          role.
        </CardDescription>
      </CardHeader>
      <CardContent>
        <ErrorAlert error={q.error} />
        {q.isPending ? (
          <Skeleton className="h-40 w-full" />
        ) : (
          <Table data-testid="tables-table">
            <TableHeader>
              <TableRow>
                <TableHead>Table</TableHead>
                <TableHead className="whitespace-nowrap text-right">
                  Rows<span className="hidden sm:inline"> visible</span>
                </TableHead>
                {overview ? <TableHead className="text-right">Rows in all</TableHead> : null}
                {overview ? <TableHead className="text-right">Snapshot</TableHead> : null}
                <TableHead>Row security</TableHead>
                {overview ? <TableHead className="text-right">Policies</TableHead> : null}
              </TableRow>
            </TableHeader>
            <TableBody>
              {q.data?.tables.map((t) => {
                const x = extra.get(`${t.schema}.${t.name}`);
                return (
                  <TableRow key={`${t.schema}.${t.name}`} data-table={`${t.schema}.${t.name}`}>
                    <TableCell className="[overflow-wrap:anywhere]">
                      <span className="font-mono">
                        <span className="text-muted-foreground">{t.schema}.</span>
                        {t.name}
                      </span>
                      {t.rowsError ? (
                        <span className="block text-xs text-muted-foreground">
                          Cannot count: {t.rowsError.message}
                        </span>
                      ) : null}
                    </TableCell>
                    <TableCell className="whitespace-nowrap text-right tabular-nums" data-testid="row-count">
                      {t.rowsError ? (
                        <code className="text-xs text-muted-foreground" title={t.rowsError.message}>
                          {t.rowsError.code}
                        </code>
                      ) : (
                        formatNumber(t.rows)
                      )}
                    </TableCell>
                    {overview ? <TableCell className="text-right tabular-nums">{formatNumber(x?.rows)}</TableCell> : null}
                    {overview ? <TableCell className="text-right tabular-nums">{formatBytes(x?.snapshot_bytes ?? x?.bytes)}</TableCell> : null}
                    <TableCell>
                      {t.rls_enabled ? <Badge variant="success">enabled{t.rls_forced ? ", forced" : ""}</Badge> : <Badge variant="outline">off</Badge>}
                    </TableCell>
                    {overview ? <TableCell className="text-right tabular-nums">{x ? x.policies : "—"}</TableCell> : null}
                  </TableRow>
                );
              })}
              {q.data?.unreadable ? (
                <TableRow data-testid="tables-unreadable">
                  <TableCell colSpan={overview ? 6 : 3} className="text-sm text-muted-foreground">
                    {q.data.unreadable} {q.data.unreadable === 1 ? "table" : "tables"} not readable with this role
                  </TableCell>
                </TableRow>
              ) : null}
            </TableBody>
          </Table>
        )}
        <Pagination
          label={`Page ${page} of ${pages} · ${total} ${q.data?.readableOnly ? "readable " : ""}tables`}
          hasPrev={page > 1}
          hasNext={page < pages}
          onPrev={() => setPage((p) => p - 1)}
          onNext={() => setPage((p) => p + 1)}
          busy={q.isFetching}
        />
      </CardContent>
    </Card>
  );
}

export default function OverviewPage() {
  const { caps } = usePrincipal();
  const overview = useOverview(caps["overview.server"].allowed);
  const health = useHealth();
  return (
    <div className="space-y-4">
      <PageHeader title="Overview" description="The server, its storage and its tables." />
      {caps["overview.server"].allowed ? (
        overview.data ? (
          <ServerStats o={overview.data} />
        ) : overview.isPending ? (
          <Skeleton className="h-32 w-full" />
        ) : (
          <ErrorAlert error={overview.error} />
        )
      ) : (
        <NotAllowed what="Server statistics are hidden" reason={caps["overview.server"].reason} />
      )}
      {!overview.data ? (
        <div className="grid grid-cols-1 gap-3 sm:grid-cols-3" data-testid="health">
          <Stat label="Status" value={health.data?.status ?? (health.isError ? "unreachable" : "…")} />
          <Stat label="Version" value={health.data?.version ?? "…"} />
          <Stat label="Uptime" value={formatDuration(health.data?.uptime_s)} />
        </div>
      ) : null}
      {caps["metrics.read"].allowed ? (
        <ActivityCharts />
      ) : (
        <NotAllowed what="Commits/s and queries/s are hidden" reason={caps["metrics.read"].reason} />
      )}
      <TablesCard overview={overview.data} readableOnly={!caps["overview.server"].allowed} />
      {caps["keys.manage"].allowed ? <KeysCard /> : null}
    </div>
  );
}

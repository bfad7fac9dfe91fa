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
      <Stat
        label="Connections"
        value={`${formatNumber(o.connections.pgwire)} / ${formatNumber(o.connections.realtime)}`}
        hint="PostgreSQL wire / realtime"
      />
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

function TablesCard({ overview }: { overview: Overview | undefined }) {
  const [page, setPage] = useState(1);
  const q = useTablesPage(page, PER_PAGE);
  const extra = new Map((overview?.tables ?? []).map((t) => [`${t.schema}.${t.name}`, t]));
  const total = q.data?.total ?? 0;
  const pages = Math.max(1, Math.ceil(total / PER_PAGE));
  return (
    <Card>
      <CardHeader>
        <CardTitle>Tables</CardTitle>
        <CardDescription>Row counts are those you can see: row-level security applies to your role.</CardDescription>
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
            </TableBody>
          </Table>
        )}
        <Pagination
          label={`Page ${page} of ${pages} · ${total} tables`}
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
      <TablesCard overview={overview.data} />
      {caps["keys.manage"].allowed ? <KeysCard /> : null}
    </div>
  );
}

"use client";

import { useEffect, useState } from "react";
import { Pencil, Plus, Trash2 } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Dialog, DialogContent, DialogDescription, DialogFooter, DialogHeader, DialogTitle } from "@/components/ui/dialog";
import { NativeSelect } from "@/components/ui/native-select";
import { Skeleton } from "@/components/ui/skeleton";
import { Table, TableBody, TableCell, TableHead, TableHeader, TableRow } from "@/components/ui/table";
import { ErrorAlert } from "@/components/error-alert";
import { NotAllowed } from "@/components/not-allowed";
import { PageHeader } from "@/components/page-header";
import { Pagination } from "@/components/pagination";
import { CreatePolicyDialog } from "@/components/policies/policy-form-dialog";
import { EditPolicyDialog } from "@/components/policies/edit-policy-dialog";
import { ExplainPanel } from "@/components/policies/explain-panel";
import { useDeletePolicy, usePoliciesPage } from "@/data/policies";
import { usePrincipal } from "@/data/session";
import { useTableNames } from "@/data/tables";
import type { Policy } from "@/lib/api";

const PER_PAGE = 10;

export default function PoliciesPage() {
  const { caps } = usePrincipal();
  const canRead = caps["policies.read"].allowed;
  const canWrite = caps["policies.write"].allowed;
  const [tableFilter, setTableFilter] = useState("");
  const [page, setPage] = useState(1);
  const policies = usePoliciesPage(tableFilter, page, PER_PAGE, canRead);
  const tables = useTableNames();
  const del = useDeletePolicy();
  const [creating, setCreating] = useState(false);
  const [editing, setEditing] = useState<Policy | null>(null);
  const [deleting, setDeleting] = useState<Policy | null>(null);

  const total = policies.data?.total ?? 0;
  const pages = Math.max(1, Math.ceil(total / PER_PAGE));
  const shown = policies.data?.policies ?? [];
  // A deletion can empty the last page: step back to the new last one.
  useEffect(() => {
    if (policies.data && !policies.isPlaceholderData && page > pages) setPage(pages);
  }, [policies.data, policies.isPlaceholderData, page, pages]);
  const tableNames = tables.data ?? [];

  return (
    <div className="space-y-4">
      <PageHeader title="Policies" description="Row-level security policies: who may see and change which rows.">
        <Button
          onClick={() => setCreating(true)}
          disabled={!canWrite || !tableNames.length}
          title={canWrite ? undefined : `Creating policies ${caps["policies.write"].reason}`}
          data-testid="new-policy"
        >
          <Plus aria-hidden /> New policy
        </Button>
      </PageHeader>
      {!canWrite ? <NotAllowed what="Policies are read-only for you" reason={caps["policies.write"].reason} /> : null}
      <Card>
        <CardHeader className="flex-col gap-2 sm:flex-row sm:items-end sm:justify-between sm:space-y-0">
          <div className="space-y-1.5">
            <CardTitle>All policies</CardTitle>
            <CardDescription>{canRead ? (policies.data ? `${total} ${tableFilter ? `on ${tableFilter}` : "in all"}` : " ") : "Hidden"}</CardDescription>
          </div>
          {canRead ? (
            <div className="w-full sm:w-64">
              <label htmlFor="policy-filter" className="sr-only">
                Table
              </label>
              <NativeSelect id="policy-filter" value={tableFilter} onChange={(e) => { setTableFilter(e.target.value); setPage(1); }}>
                <option value="">All tables</option>
                {tableNames.map((t) => (
                  <option key={t} value={t}>
                    {t}
                  </option>
                ))}
              </NativeSelect>
            </div>
          ) : null}
        </CardHeader>
        <CardContent>
          {!canRead ? (
            <NotAllowed what="The policy list is hidden" reason={caps["policies.read"].reason} />
          ) : policies.isPending ? (
            <Skeleton className="h-32 w-full" />
          ) : policies.error ? (
            <ErrorAlert error={policies.error} />
          ) : total === 0 ? (
            <p className="py-6 text-center text-sm text-muted-foreground">{tableFilter ? `No policies on ${tableFilter}.` : "No policies yet."}</p>
          ) : (
            <>
              <Table data-testid="policies-table">
                <TableHeader>
                  <TableRow>
                    <TableHead>Name</TableHead>
                    <TableHead>Table</TableHead>
                    <TableHead>Command</TableHead>
                    <TableHead>Roles</TableHead>
                    <TableHead>USING</TableHead>
                    <TableHead>WITH CHECK</TableHead>
                    <TableHead>
                      <span className="sr-only">Actions</span>
                    </TableHead>
                  </TableRow>
                </TableHeader>
                <TableBody>
                  {shown.map((p) => (
                    <TableRow key={`${p.table}/${p.name}`} data-policy={p.name}>
                      <TableCell className="font-medium">
                        {p.name} {!p.permissive ? <Badge variant="warning">restrictive</Badge> : null}
                      </TableCell>
                      <TableCell className="font-mono text-xs">{p.table}</TableCell>
                      <TableCell>
                        <Badge variant="secondary">{p.command.toUpperCase()}</Badge>
                      </TableCell>
                      <TableCell className="text-xs">{p.roles.join(", ")}</TableCell>
                      <TableCell className="max-w-xs break-all font-mono text-xs">{p.using ?? "—"}</TableCell>
                      <TableCell className="max-w-xs break-all font-mono text-xs">{p.with_check ?? "—"}</TableCell>
                      <TableCell className="whitespace-nowrap text-right">
                        <Button variant="ghost" size="icon" aria-label={`Edit ${p.name}`} onClick={() => setEditing(p)} disabled={!canWrite}>
                          <Pencil aria-hidden />
                        </Button>
                        <Button variant="ghost" size="icon" aria-label={`Delete ${p.name}`} onClick={() => setDeleting(p)} disabled={!canWrite}>
                          <Trash2 aria-hidden />
                        </Button>
                      </TableCell>
                    </TableRow>
                  ))}
                </TableBody>
              </Table>
              <Pagination
                label={`Page ${page} of ${pages} · ${total} policies`}
                hasPrev={page > 1}
                hasNext={page < pages}
                onPrev={() => setPage((p) => p - 1)}
                onNext={() => setPage((p) => p + 1)}
                busy={policies.isFetching}
              />
            </>
          )}
        </CardContent>
      </Card>
      {caps["policies.explain"].allowed ? (
        <ExplainPanel tables={tableNames} canListUsers={caps["users.read"].allowed} />
      ) : (
        <NotAllowed what="Explain is unavailable" reason={caps["policies.explain"].reason} />
      )}
      {creating ? <CreatePolicyDialog open={creating} onOpenChange={setCreating} tables={tableNames} /> : null}
      {editing ? <EditPolicyDialog policy={editing} onClose={() => setEditing(null)} /> : null}
      <Dialog open={!!deleting} onOpenChange={(o) => { if (!o) { setDeleting(null); del.reset(); } }}>
        <DialogContent>
          <DialogHeader>
            <DialogTitle>Delete {deleting?.name}?</DialogTitle>
            <DialogDescription>
              On {deleting?.table}. Rows it allowed become invisible to those it allowed them to.
            </DialogDescription>
          </DialogHeader>
          <ErrorAlert error={del.error} />
          <DialogFooter>
            <Button variant="outline" onClick={() => setDeleting(null)}>
              Cancel
            </Button>
            <Button
              variant="destructive"
              disabled={del.isPending}
              onClick={() => deleting && del.mutate({ table: deleting.table, name: deleting.name }, { onSuccess: () => setDeleting(null) })}
            >
              Delete
            </Button>
          </DialogFooter>
        </DialogContent>
      </Dialog>
    </div>
  );
}

"use client";

import { useState } from "react";
import { CheckCircle2, ShieldCheck, XCircle } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Dialog, DialogContent, DialogDescription, DialogHeader, DialogTitle } from "@/components/ui/dialog";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import { Select, SelectContent, SelectItem, SelectTrigger, SelectValue } from "@/components/ui/select";
import { Skeleton } from "@/components/ui/skeleton";
import { Table, TableBody, TableCell, TableHead, TableHeader, TableRow } from "@/components/ui/table";
import { ErrorAlert } from "@/components/error-alert";
import { NotAllowed } from "@/components/not-allowed";
import { PageHeader } from "@/components/page-header";
import { Pagination } from "@/components/pagination";
import { useAuditKey, useAuditPage, useSealAudit, useVerifyAudit } from "@/data/audit";
import { usePrincipal } from "@/data/session";
import type { AuditEvent, AuditFilter } from "@/lib/api";
import { formatTime } from "@/lib/utils";

const LIMIT = 25;

/** `datetime-local` input value → RFC 3339 (UTC), or undefined. */
function toRfc3339(local: string): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

function VerifyCard({ canSeal }: { canSeal: boolean }) {
  const verify = useVerifyAudit();
  const seal = useSealAudit();
  const key = useAuditKey(true);
  const v = verify.data;
  return (
    <Card>
      <CardHeader className="flex-col gap-2 sm:flex-row sm:items-start sm:justify-between sm:space-y-0">
        <div className="space-y-1.5">
          <CardTitle>Integrity</CardTitle>
          <CardDescription>
            The log is a hash chain, sealed with a signing key{key.data ? ` (key ${key.data.key_id})` : ""}.
          </CardDescription>
        </div>
        <div className="flex gap-2">
          <Button onClick={() => verify.mutate()} disabled={verify.isPending} data-testid="verify-audit">
            <ShieldCheck aria-hidden /> {verify.isPending ? "Verifying…" : "Verify"}
          </Button>
          <Button variant="outline" onClick={() => seal.mutate()} disabled={!canSeal || seal.isPending}>
            Seal now
          </Button>
        </div>
      </CardHeader>
      <CardContent className="space-y-2">
        <ErrorAlert error={verify.error} title="Verification failed to run" />
        <ErrorAlert error={seal.error} />
        {seal.isSuccess ? (
          <p className="text-sm text-success" role="status">
            Sealed.
          </p>
        ) : null}
        {v ? (
          <div
            className={`flex items-start gap-2 rounded-md border p-3 ${v.ok ? "border-success/60 bg-success/10" : "border-destructive/60 bg-destructive/10"}`}
            data-testid="verify-result"
            data-ok={String(v.ok)}
          >
            {v.ok ? <CheckCircle2 className="mt-0.5 h-5 w-5 text-success" aria-hidden /> : <XCircle className="mt-0.5 h-5 w-5 text-destructive" aria-hidden />}
            <div className="text-sm">
              <p className="font-semibold">{v.ok ? "The log verifies" : "The log does NOT verify"}</p>
              <p>
                {v.events} events in {v.segments} segment{v.segments === 1 ? "" : "s"}
                {v.signed != null ? `, ${v.signed} sealed` : ""}
                {v.key_ids?.length ? `, signed by ${v.key_ids.join(", ")}` : ""}.
              </p>
              {v.head_seq != null ? (
                <p className="break-all text-xs text-muted-foreground">
                  Head #{v.head_seq}
                  {v.head_hash ? ` · ${v.head_hash}` : ""}
                  {v.open_segment ? ` · open segment ${v.open_segment}` : ""}
                </p>
              ) : null}
              {v.first_bad ? (
                <p className="mt-1">
                  First bad entry: segment {String(v.first_bad.segment)}, line {v.first_bad.line}: {v.first_bad.reason}
                </p>
              ) : null}
            </div>
          </div>
        ) : null}
      </CardContent>
    </Card>
  );
}

export default function AuditPage() {
  const { caps } = usePrincipal();
  const canRead = caps["audit.read"].allowed;
  const [draft, setDraft] = useState({ action: "", actor: "", outcome: "", since: "", until: "" });
  const [filter, setFilter] = useState<AuditFilter>({});
  const [cursors, setCursors] = useState<(number | null)[]>([null]);
  const before = cursors[cursors.length - 1] ?? null;
  const page = useAuditPage(filter, before, LIMIT, canRead);
  const [selected, setSelected] = useState<AuditEvent | null>(null);

  if (!canRead) {
    return (
      <div className="space-y-4">
        <PageHeader title="Audit" description="Who did what, when, with what outcome." />
        <NotAllowed what="The audit log is hidden" reason={caps["audit.read"].reason} />
      </div>
    );
  }

  const events = page.data?.events ?? [];
  const nextBefore = page.data?.next_before ?? null;

  return (
    <div className="space-y-4">
      <PageHeader title="Audit" description="Who did what, when, with what outcome." />
      <VerifyCard canSeal={caps["audit.seal"].allowed} />
      <Card>
        <CardHeader>
          <CardTitle>Events</CardTitle>
          <CardDescription>Newest first.</CardDescription>
        </CardHeader>
        <CardContent>
          <form
            className="mb-4 grid gap-3 sm:grid-cols-2 lg:grid-cols-6 lg:items-end"
            onSubmit={(e) => {
              e.preventDefault();
              setFilter({
                action: draft.action.trim() || undefined,
                actor: draft.actor.trim() || undefined,
                outcome: (draft.outcome as AuditFilter["outcome"]) || undefined,
                since: toRfc3339(draft.since),
                until: toRfc3339(draft.until),
              });
              setCursors([null]);
            }}
          >
            <div className="space-y-1.5">
              <Label htmlFor="audit-action">Action</Label>
              <Input id="audit-action" placeholder="policy, user.create…" value={draft.action} onChange={(e) => setDraft({ ...draft, action: e.target.value })} />
            </div>
            <div className="space-y-1.5">
              <Label htmlFor="audit-actor">Actor</Label>
              <Input id="audit-actor" placeholder="role or user id" value={draft.actor} onChange={(e) => setDraft({ ...draft, actor: e.target.value })} />
            </div>
            <div className="space-y-1.5">
              <Label htmlFor="audit-outcome">Outcome</Label>
              <Select value={draft.outcome || "any"} onValueChange={(v) => setDraft({ ...draft, outcome: v === "any" ? "" : v })}>
                <SelectTrigger id="audit-outcome">
                  <SelectValue />
                </SelectTrigger>
                <SelectContent>
                  <SelectItem value="any">Any</SelectItem>
                  <SelectItem value="success">Success</SelectItem>
                  <SelectItem value="failure">Failure</SelectItem>
                </SelectContent>
              </Select>
            </div>
            <div className="space-y-1.5">
              <Label htmlFor="audit-since">Since</Label>
              <Input id="audit-since" type="datetime-local" value={draft.since} onChange={(e) => setDraft({ ...draft, since: e.target.value })} />
            </div>
            <div className="space-y-1.5">
              <Label htmlFor="audit-until">Until</Label>
              <Input id="audit-until" type="datetime-local" value={draft.until} onChange={(e) => setDraft({ ...draft, until: e.target.value })} />
            </div>
            <Button type="submit" data-testid="audit-filter">
              Filter
            </Button>
          </form>
          <ErrorAlert error={page.error} />
          {page.isPending ? (
            <Skeleton className="h-40 w-full" />
          ) : events.length === 0 ? (
            <p className="py-6 text-center text-sm text-muted-foreground">No events.</p>
          ) : (
            <Table data-testid="audit-table">
              <TableHeader>
                <TableRow>
                  <TableHead className="text-right">#</TableHead>
                  <TableHead>Time</TableHead>
                  <TableHead>Action</TableHead>
                  <TableHead>Actor</TableHead>
                  <TableHead className="hidden md:table-cell">Object</TableHead>
                  <TableHead>Outcome</TableHead>
                </TableRow>
              </TableHeader>
              <TableBody>
                {events.map((ev) => (
                  <TableRow key={ev.id} data-action={ev.action}>
                    <TableCell className="text-right tabular-nums text-muted-foreground">{ev.seq}</TableCell>
                    <TableCell className="whitespace-nowrap">{formatTime(ev.time)}</TableCell>
                    <TableCell>
                      <button type="button" className="font-mono text-xs font-medium underline-offset-4 hover:underline" onClick={() => setSelected(ev)}>
                        {ev.action}
                      </button>
                    </TableCell>
                    <TableCell className="text-xs">
                      {ev.actor.role}
                      {ev.actor.user_id ? <span className="block max-w-[12rem] truncate font-mono text-muted-foreground">{ev.actor.user_id}</span> : null}
                    </TableCell>
                    <TableCell className="hidden max-w-xs truncate font-mono text-xs md:table-cell">{ev.object ?? ""}</TableCell>
                    <TableCell>
                      <Badge variant={ev.outcome === "success" ? "secondary" : "destructive"}>{ev.outcome}</Badge>
                    </TableCell>
                  </TableRow>
                ))}
              </TableBody>
            </Table>
          )}
          <Pagination
            label={`Page ${cursors.length}`}
            hasPrev={cursors.length > 1}
            hasNext={nextBefore != null && events.length >= LIMIT}
            onPrev={() => setCursors((c) => c.slice(0, -1))}
            onNext={() => setCursors((c) => [...c, nextBefore])}
            busy={page.isFetching}
          />
        </CardContent>
      </Card>
      <Dialog open={!!selected} onOpenChange={(o) => !o && setSelected(null)}>
        <DialogContent className="max-w-2xl">
          <DialogHeader>
            <DialogTitle>
              {selected?.action} <span className="text-muted-foreground">#{selected?.seq}</span>
            </DialogTitle>
            <DialogDescription>{selected ? formatTime(selected.time) : ""}</DialogDescription>
          </DialogHeader>
          <pre className="max-h-[60vh] overflow-auto rounded-md bg-muted p-3 text-xs">{selected ? JSON.stringify(selected, null, 2) : ""}</pre>
        </DialogContent>
      </Dialog>
    </div>
  );
}

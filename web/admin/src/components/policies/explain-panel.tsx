"use client";

import { useEffect, useState } from "react";
import { CheckCircle2, XCircle } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { NativeSelect } from "@/components/ui/native-select";
import { Table, TableBody, TableCell, TableHead, TableHeader, TableRow } from "@/components/ui/table";
import { Textarea } from "@/components/ui/textarea";
import { ErrorAlert } from "@/components/error-alert";
import { Field } from "@/components/field";
import { useExplainPolicy } from "@/data/policies";
import { useTableColumns } from "@/data/tables";
import { useUserChoices } from "@/data/users";
import type { ExplainRequest, ExplainResponse } from "@/lib/api";

type Cmd = ExplainRequest["command"];
const ANON = "__anon__";
const CUSTOM = "__custom__";

function ResultIcon({ v }: { v: boolean | null | undefined }) {
  if (v === true) return <Badge variant="success">true</Badge>;
  if (v === false) return <Badge variant="destructive">false</Badge>;
  return <Badge variant="outline">n/a</Badge>;
}

function ExplainResult({ r }: { r: ExplainResponse }) {
  return (
    <div className="space-y-3" data-testid="explain-result" data-allowed={String(r.allowed)}>
      <div className={`flex items-start gap-2 rounded-md border p-3 ${r.allowed ? "border-success/60 bg-success/10" : "border-destructive/60 bg-destructive/10"}`}>
        {r.allowed ? <CheckCircle2 className="mt-0.5 h-5 w-5 text-success" aria-hidden /> : <XCircle className="mt-0.5 h-5 w-5 text-destructive" aria-hidden />}
        <div>
          <p className="font-semibold">{r.allowed ? "Allowed" : "Denied"}</p>
          <p className="text-sm">{r.reason}</p>
          <p className="text-xs text-muted-foreground">
            {r.role ? `as ${r.role}` : ""}
            {r.row_security === false ? " · row security is off for this table" : ""}
            {r.bypass ? " · the role bypasses row security" : ""}
          </p>
        </div>
      </div>
      {r.checks.length ? (
        <div>
          <h3 className="mb-1 text-sm font-medium">Checks</h3>
          <Table>
            <TableHeader>
              <TableRow>
                <TableHead>Check</TableHead>
                <TableHead>Predicate</TableHead>
                <TableHead>Result</TableHead>
              </TableRow>
            </TableHeader>
            <TableBody>
              {r.checks.map((c, i) => (
                <TableRow key={i}>
                  <TableCell>
                    {c.check} <span className="text-xs text-muted-foreground">({c.command})</span>
                  </TableCell>
                  <TableCell className="max-w-md break-all font-mono text-xs">{c.predicate ?? "—"}</TableCell>
                  <TableCell>
                    <ResultIcon v={c.result} />
                  </TableCell>
                </TableRow>
              ))}
            </TableBody>
          </Table>
        </div>
      ) : null}
      <div>
        <h3 className="mb-1 text-sm font-medium">Policies on the table</h3>
        {r.policies.length === 0 ? (
          <p className="text-sm text-muted-foreground">None: with row security on, nothing is allowed.</p>
        ) : (
          <Table>
            <TableHeader>
              <TableRow>
                <TableHead>Policy</TableHead>
                <TableHead>Applies</TableHead>
                <TableHead>USING</TableHead>
                <TableHead>WITH CHECK</TableHead>
              </TableRow>
            </TableHeader>
            <TableBody>
              {r.policies.map((p) => (
                <TableRow key={p.name}>
                  <TableCell>
                    <span className="font-medium">{p.name}</span>{" "}
                    <span className="text-xs text-muted-foreground">
                      {p.command.toUpperCase()} · {p.permissive ? "permissive" : "restrictive"} · {p.roles.join(", ")}
                    </span>
                  </TableCell>
                  <TableCell>
                    {p.applies_to_command && p.applies_to_role ? (
                      <Badge variant="secondary">yes</Badge>
                    ) : (
                      <span className="text-xs text-muted-foreground">
                        no ({!p.applies_to_command ? "other command" : "other role"})
                      </span>
                    )}
                  </TableCell>
                  <TableCell className="font-mono text-xs">
                    <div className="break-all">{p.using_bound ?? p.using ?? "—"}</div>
                    {p.using ? <ResultIcon v={p.using_result} /> : null}
                  </TableCell>
                  <TableCell className="font-mono text-xs">
                    <div className="break-all">{p.with_check_bound ?? p.with_check ?? "—"}</div>
                    {p.with_check ? <ResultIcon v={p.with_check_result} /> : null}
                  </TableCell>
                </TableRow>
              ))}
            </TableBody>
          </Table>
        )}
      </div>
    </div>
  );
}

export function ExplainPanel({ tables, canListUsers }: { tables: string[]; canListUsers: boolean }) {
  const explain = useExplainPolicy();
  const users = useUserChoices(canListUsers);
  const [table, setTable] = useState("");
  const [command, setCommand] = useState<Cmd>("update");
  const [userChoice, setUserChoice] = useState("");
  const [customSub, setCustomSub] = useState("");
  const [rowText, setRowText] = useState("");
  const [rowError, setRowError] = useState<string | null>(null);
  const effectiveTable = table || tables[0] || "";
  const columns = useTableColumns(effectiveTable);
  const firstUser = users.data?.users[0]?.id ?? "";
  const choice = userChoice || (firstUser ? firstUser : CUSTOM);
  const sub = choice === CUSTOM ? customSub.trim() : choice === ANON ? "" : choice;

  // A row template from the table's columns, with the chosen user in the owner-like columns.
  useEffect(() => {
    if (!columns.data) return;
    const row: Record<string, unknown> = {};
    for (const c of columns.data) {
      if (/owner|user_id|author/.test(c.name)) row[c.name] = sub || null;
      else if (/int|Int/.test(c.type)) row[c.name] = 1;
      else row[c.name] = "";
    }
    setRowText(JSON.stringify(row, null, 2));
  }, [columns.data, sub]);

  return (
    <Card>
      <CardHeader>
        <CardTitle>Explain</CardTitle>
        <CardDescription>Would this user be allowed to do this to this row, and which policy decides?</CardDescription>
      </CardHeader>
      <CardContent>
        <form
          className="space-y-3"
          onSubmit={(e) => {
            e.preventDefault();
            let row: Record<string, unknown> | null = null;
            if (rowText.trim()) {
              try {
                const v: unknown = JSON.parse(rowText);
                if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("a JSON object is needed");
                row = v as Record<string, unknown>;
              } catch (err) {
                setRowError(`The row is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
                return;
              }
            }
            setRowError(null);
            const anon = choice === ANON;
            explain.mutate({
              table: effectiveTable,
              command,
              claims: anon ? { role: "anon" } : { sub, role: "authenticated" },
              role: anon ? "anon" : "authenticated",
              row,
            });
          }}
        >
          <div className="grid gap-3 sm:grid-cols-3">
            <Field id="explain-table" label="Table">
              <NativeSelect id="explain-table" value={effectiveTable} onChange={(e) => setTable(e.target.value)}>
                {tables.map((t) => (
                  <option key={t} value={t}>
                    {t}
                  </option>
                ))}
              </NativeSelect>
            </Field>
            <Field id="explain-command" label="Operation">
              <NativeSelect id="explain-command" value={command} onChange={(e) => setCommand(e.target.value as Cmd)}>
                {(["select", "insert", "update", "delete"] as const).map((c) => (
                  <option key={c} value={c}>
                    {c.toUpperCase()}
                  </option>
                ))}
              </NativeSelect>
            </Field>
            <Field id="explain-user" label="As">
              <NativeSelect id="explain-user" value={choice} onChange={(e) => setUserChoice(e.target.value)}>
                {users.data?.users.map((u) => (
                  <option key={u.id} value={u.id}>
                    {u.email ?? u.id}
                  </option>
                ))}
                <option value={ANON}>anonymous (anon)</option>
                <option value={CUSTOM}>another user id…</option>
              </NativeSelect>
            </Field>
          </div>
          {choice === CUSTOM ? (
            <Field id="explain-sub" label="User id (sub claim)">
              <Input id="explain-sub" value={customSub} onChange={(e) => setCustomSub(e.target.value)} placeholder="00000000-0000-0000-0000-000000000000" />
            </Field>
          ) : null}
          <Field id="explain-row" label="Row (JSON, optional)" hint="Leave empty to explain without a row.">
            <Textarea id="explain-row" rows={5} value={rowText} onChange={(e) => setRowText(e.target.value)} />
          </Field>
          {rowError ? (
            <p className="text-sm text-destructive" role="alert">
              {rowError}
            </p>
          ) : null}
          <ErrorAlert error={explain.error} title="Explain failed" />
          <Button type="submit" disabled={!effectiveTable || explain.isPending} data-testid="explain-submit">
            {explain.isPending ? "Explaining…" : "Explain"}
          </Button>
        </form>
        {explain.data ? (
          <div className="mt-4">
            <ExplainResult r={explain.data} />
          </div>
        ) : null}
      </CardContent>
    </Card>
  );
}

"use client";

import { useMemo, useState } from "react";
import { Button } from "@/components/ui/button";
import { Dialog, DialogContent, DialogDescription, DialogFooter, DialogHeader, DialogTitle } from "@/components/ui/dialog";
import { Input } from "@/components/ui/input";
import { NativeSelect } from "@/components/ui/native-select";
import { Textarea } from "@/components/ui/textarea";
import { ErrorAlert } from "@/components/error-alert";
import { Field } from "@/components/field";
import { useCreatePolicy } from "@/data/policies";
import { useTableColumns } from "@/data/tables";
import type { PolicyCommand } from "@/lib/api";
import { generatePolicy, policySql, TEMPLATES, TemplateError, type TemplateId } from "@/lib/policy-templates";

const COMMANDS: PolicyCommand[] = ["all", "select", "insert", "update", "delete"];

export function CreatePolicyDialog({
  open,
  onOpenChange,
  tables,
}: {
  open: boolean;
  onOpenChange: (o: boolean) => void;
  tables: string[];
}) {
  const create = useCreatePolicy();
  const [template, setTemplate] = useState<TemplateId>("owner");
  const [table, setTable] = useState("");
  const [column, setColumn] = useState("");
  const [command, setCommand] = useState<PolicyCommand>("all");
  const [name, setName] = useState("");
  const [roles, setRoles] = useState("");
  const [using, setUsing] = useState("");
  const [withCheck, setWithCheck] = useState("");
  const effectiveTable = table || tables[0] || "";
  const columns = useTableColumns(effectiveTable);
  const info = TEMPLATES.find((t) => t.id === template);
  const effectiveColumn = column || columns.data?.find((c) => /owner|user_id|author/.test(c.name))?.name || "";

  const generated = useMemo(() => {
    try {
      return {
        policy: generatePolicy(template, {
          table: effectiveTable,
          column: effectiveColumn,
          command,
          name,
          roles: roles.trim() ? roles.split(",").map((r) => r.trim()).filter(Boolean) : undefined,
          using,
          withCheck,
        }),
        error: null,
      };
    } catch (e) {
      if (e instanceof TemplateError) return { policy: null, error: e.message };
      throw e;
    }
  }, [template, effectiveTable, effectiveColumn, command, name, roles, using, withCheck]);

  const close = (o: boolean) => {
    onOpenChange(o);
    if (!o) create.reset();
  };

  return (
    <Dialog open={open} onOpenChange={close}>
      <DialogContent className="max-w-2xl">
        <DialogHeader>
          <DialogTitle>New policy</DialogTitle>
          <DialogDescription>Start from a template; the SQL it amounts to is shown below.</DialogDescription>
        </DialogHeader>
        <form
          className="space-y-3"
          onSubmit={(e) => {
            e.preventDefault();
            if (generated.policy) create.mutate(generated.policy, { onSuccess: () => close(false) });
          }}
        >
          <div className="grid gap-3 sm:grid-cols-2">
            <Field id="policy-template" label="Template" hint={info?.description}>
              <NativeSelect id="policy-template" value={template} onChange={(e) => setTemplate(e.target.value as TemplateId)}>
                {TEMPLATES.map((t) => (
                  <option key={t.id} value={t.id}>
                    {t.label}
                  </option>
                ))}
              </NativeSelect>
            </Field>
            <Field id="policy-table" label="Table">
              <NativeSelect id="policy-table" value={effectiveTable} onChange={(e) => { setTable(e.target.value); setColumn(""); }}>
                {tables.map((t) => (
                  <option key={t} value={t}>
                    {t}
                  </option>
                ))}
              </NativeSelect>
            </Field>
            {info?.needsColumn ? (
              <Field id="policy-column" label="Owner column" hint="Compared with auth.uid(), the signed-in user's id.">
                <NativeSelect id="policy-column" value={effectiveColumn} onChange={(e) => setColumn(e.target.value)}>
                  <option value="">Choose…</option>
                  {columns.data?.map((c) => (
                    <option key={c.name} value={c.name}>
                      {c.name} ({c.type})
                    </option>
                  ))}
                </NativeSelect>
              </Field>
            ) : null}
            {template !== "public-read" && template !== "authenticated-read" ? (
              <Field id="policy-command" label="Command">
                <NativeSelect id="policy-command" value={command} onChange={(e) => setCommand(e.target.value as PolicyCommand)}>
                  {COMMANDS.map((c) => (
                    <option key={c} value={c}>
                      {c.toUpperCase()}
                    </option>
                  ))}
                </NativeSelect>
              </Field>
            ) : null}
            <Field id="policy-name" label="Name" hint={template === "custom" ? "Required" : "Leave empty for the template's name"}>
              <Input id="policy-name" value={name} onChange={(e) => setName(e.target.value)} placeholder={generated.policy?.name ?? ""} />
            </Field>
            <Field id="policy-roles" label="Roles" hint="Comma-separated; empty for the template's roles">
              <Input id="policy-roles" value={roles} onChange={(e) => setRoles(e.target.value)} placeholder={generated.policy?.roles?.join(", ") ?? "public"} />
            </Field>
          </div>
          {template === "custom" ? (
            <div className="grid gap-3 sm:grid-cols-2">
              <Field id="policy-using" label="USING">
                <Textarea id="policy-using" value={using} onChange={(e) => setUsing(e.target.value)} placeholder="owner = auth.uid()" />
              </Field>
              <Field id="policy-with-check" label="WITH CHECK">
                <Textarea id="policy-with-check" value={withCheck} onChange={(e) => setWithCheck(e.target.value)} />
              </Field>
            </div>
          ) : null}
          <div>
            <p className="mb-1 text-sm font-medium">SQL</p>
            <pre className="overflow-x-auto rounded-md bg-muted p-3 text-xs" data-testid="policy-sql">
              {generated.policy ? policySql(generated.policy) : `-- ${generated.error}`}
            </pre>
          </div>
          <ErrorAlert error={create.error} title="The server refused the policy" />
          <DialogFooter>
            <Button variant="outline" onClick={() => close(false)}>
              Cancel
            </Button>
            <Button type="submit" disabled={!generated.policy || create.isPending} data-testid="create-policy-submit">
              {create.isPending ? "Creating…" : "Create policy"}
            </Button>
          </DialogFooter>
        </form>
      </DialogContent>
    </Dialog>
  );
}

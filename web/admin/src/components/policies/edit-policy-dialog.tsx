"use client";

import { useState } from "react";
import { Button } from "@/components/ui/button";
import { Dialog, DialogContent, DialogDescription, DialogFooter, DialogHeader, DialogTitle } from "@/components/ui/dialog";
import { Input } from "@/components/ui/input";
import { Textarea } from "@/components/ui/textarea";
import { ErrorAlert } from "@/components/error-alert";
import { Field } from "@/components/field";
import { useUpdatePolicy } from "@/data/policies";
import type { Policy } from "@/lib/api";

export function EditPolicyDialog({ policy, onClose }: { policy: Policy; onClose: () => void }) {
  const update = useUpdatePolicy();
  const [roles, setRoles] = useState(policy.roles.join(", "));
  const [using, setUsing] = useState(policy.using ?? "");
  const [withCheck, setWithCheck] = useState(policy.with_check ?? "");
  return (
    <Dialog open onOpenChange={(o) => !o && onClose()}>
      <DialogContent className="max-w-2xl">
        <DialogHeader>
          <DialogTitle>Edit {policy.name}</DialogTitle>
          <DialogDescription>
            {policy.table}, {policy.command.toUpperCase()}
          </DialogDescription>
        </DialogHeader>
        <form
          className="space-y-3"
          onSubmit={(e) => {
            e.preventDefault();
            update.mutate(
              {
                table: policy.table,
                name: policy.name,
                patch: {
                  roles: roles.split(",").map((r) => r.trim()).filter(Boolean),
                  using: using.trim() || null,
                  with_check: withCheck.trim() || null,
                },
              },
              { onSuccess: onClose },
            );
          }}
        >
          <Field id="edit-roles" label="Roles">
            <Input id="edit-roles" value={roles} onChange={(e) => setRoles(e.target.value)} />
          </Field>
          <Field id="edit-using" label="USING">
            <Textarea id="edit-using" value={using} onChange={(e) => setUsing(e.target.value)} />
          </Field>
          <Field id="edit-with-check" label="WITH CHECK">
            <Textarea id="edit-with-check" value={withCheck} onChange={(e) => setWithCheck(e.target.value)} />
          </Field>
          <ErrorAlert error={update.error} title="The server refused the change" />
          <DialogFooter>
            <Button variant="outline" onClick={onClose}>
              Cancel
            </Button>
            <Button type="submit" disabled={update.isPending}>
              Save
            </Button>
          </DialogFooter>
        </form>
      </DialogContent>
    </Dialog>
  );
}

"use client";

import { useState } from "react";
import { Button } from "@/components/ui/button";
import { Dialog, DialogContent, DialogDescription, DialogFooter, DialogHeader, DialogTitle } from "@/components/ui/dialog";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import { Switch } from "@/components/ui/switch";
import { Textarea } from "@/components/ui/textarea";
import { ErrorAlert } from "@/components/error-alert";
import { Field } from "@/components/field";
import { useCreateUser } from "@/data/users";

export function CreateUserDialog({ open, onOpenChange }: { open: boolean; onOpenChange: (o: boolean) => void }) {
  const create = useCreateUser();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [confirm, setConfirm] = useState(true);
  const [meta, setMeta] = useState("");
  const [metaError, setMetaError] = useState<string | null>(null);
  const close = (o: boolean) => {
    onOpenChange(o);
    if (!o) {
      create.reset();
      setEmail("");
      setPassword("");
      setMeta("");
    }
  };
  return (
    <Dialog open={open} onOpenChange={close}>
      <DialogContent>
        <DialogHeader>
          <DialogTitle>New user</DialogTitle>
          <DialogDescription>Signs in with this e-mail and password.</DialogDescription>
        </DialogHeader>
        <form
          className="space-y-3"
          onSubmit={(e) => {
            e.preventDefault();
            let user_metadata: Record<string, unknown> | undefined;
            if (meta.trim()) {
              try {
                user_metadata = JSON.parse(meta) as Record<string, unknown>;
              } catch (err) {
                setMetaError(`Not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
                return;
              }
            }
            setMetaError(null);
            create.mutate({ email: email.trim(), password, email_confirm: confirm, user_metadata }, { onSuccess: () => close(false) });
          }}
        >
          <Field id="new-user-email" label="E-mail">
            <Input id="new-user-email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required autoComplete="off" />
          </Field>
          <Field id="new-user-password" label="Password">
            <Input id="new-user-password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} required autoComplete="new-password" />
          </Field>
          <div className="flex items-center gap-2">
            <Switch id="new-user-confirm" checked={confirm} onCheckedChange={setConfirm} />
            <Label htmlFor="new-user-confirm">E-mail already confirmed</Label>
          </div>
          <Field id="new-user-meta" label="User metadata (JSON, optional)">
            <Textarea id="new-user-meta" value={meta} onChange={(e) => setMeta(e.target.value)} placeholder='{"name": "Ada"}' />
          </Field>
          {metaError ? (
            <p role="alert" className="text-sm text-destructive">
              {metaError}
            </p>
          ) : null}
          <ErrorAlert error={create.error} title="The server refused the user" />
          <DialogFooter>
            <Button variant="outline" onClick={() => close(false)}>
              Cancel
            </Button>
            <Button type="submit" disabled={create.isPending} data-testid="create-user-submit">
              {create.isPending ? "Creating…" : "Create user"}
            </Button>
          </DialogFooter>
        </form>
      </DialogContent>
    </Dialog>
  );
}

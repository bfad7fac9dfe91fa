"use client";

import { useState } from "react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Dialog, DialogContent, DialogDescription, DialogFooter, DialogHeader, DialogTitle } from "@/components/ui/dialog";
import { Input } from "@/components/ui/input";
import { NativeSelect } from "@/components/ui/native-select";
import { ErrorAlert } from "@/components/error-alert";
import { Field } from "@/components/field";
import { useDeleteUser, useSignOutEverywhere, useUpdateUser, useUserSessions } from "@/data/users";
import type { AuthUser } from "@/lib/api";
import { formatTime } from "@/lib/utils";

export function isBanned(u: AuthUser): boolean {
  return !!u.banned_until && new Date(u.banned_until).getTime() > Date.now();
}

export function UserDialog({ user, onClose }: { user: AuthUser; onClose: () => void }) {
  const update = useUpdateUser();
  const del = useDeleteUser();
  const sessions = useUserSessions(user.id, true);
  const signOutAll = useSignOutEverywhere();
  const [ban, setBan] = useState("24h");
  const [password, setPassword] = useState("");
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [done, setDone] = useState<string | null>(null);
  const current = update.data?.id === user.id ? update.data : user;
  const act = (label: string, body: Parameters<typeof update.mutate>[0]["update"]) =>
    update.mutate({ id: user.id, update: body }, { onSuccess: () => setDone(label) });

  return (
    <Dialog open onOpenChange={(o) => !o && onClose()}>
      <DialogContent className="max-w-xl">
        <DialogHeader>
          <DialogTitle className="break-all">{current.email ?? current.id}</DialogTitle>
          <DialogDescription className="break-all font-mono text-xs">{current.id}</DialogDescription>
        </DialogHeader>
        <dl className="grid grid-cols-[auto_1fr] gap-x-4 gap-y-1 text-sm">
          <dt className="text-muted-foreground">Created</dt>
          <dd>{formatTime(current.created_at)}</dd>
          <dt className="text-muted-foreground">Last sign-in</dt>
          <dd>{formatTime(current.last_sign_in_at)}</dd>
          <dt className="text-muted-foreground">E-mail</dt>
          <dd>{current.email_confirmed_at ? <Badge variant="success">confirmed</Badge> : <Badge variant="warning">unconfirmed</Badge>}</dd>
          <dt className="text-muted-foreground">Banned</dt>
          <dd>{isBanned(current) ? `until ${formatTime(current.banned_until)}` : "no"}</dd>
        </dl>
        {done ? (
          <p className="text-sm text-success" role="status">
            {done}.
          </p>
        ) : null}
        <ErrorAlert error={update.error ?? del.error ?? signOutAll.error} />
        <div className="space-y-3 border-t pt-3">
          {!current.email_confirmed_at ? (
            <Button variant="outline" size="sm" onClick={() => act("E-mail confirmed", { email_confirm: true })}>
              Confirm e-mail
            </Button>
          ) : null}
          <div className="flex items-end gap-2">
            <div className="flex-1">
              <Field id="ban-duration" label="Ban">
                <NativeSelect id="ban-duration" value={ban} onChange={(e) => setBan(e.target.value)}>
                  <option value="24h">for 24 hours</option>
                  <option value="876000h">for good</option>
                  <option value="none">lift the ban</option>
                </NativeSelect>
              </Field>
            </div>
            <Button variant="outline" onClick={() => act(ban === "none" ? "Ban lifted" : "User banned", { ban_duration: ban })} disabled={update.isPending}>
              Apply
            </Button>
          </div>
          <form
            className="flex items-end gap-2"
            onSubmit={(e) => {
              e.preventDefault();
              act("Password reset", { password });
              setPassword("");
            }}
          >
            <div className="flex-1">
              <Field id="reset-password" label="New password">
                <Input id="reset-password" type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} />
              </Field>
            </div>
            <Button type="submit" variant="outline" disabled={!password || update.isPending}>
              Reset
            </Button>
          </form>
          <div>
            <p className="mb-1 text-sm font-medium">Sessions</p>
            {sessions.error ? (
              <ErrorAlert error={sessions.error} />
            ) : (
              <ul className="space-y-1 text-xs" data-testid="user-sessions">
                {sessions.data?.sessions.length === 0 ? <li className="text-muted-foreground">No sessions.</li> : null}
                {sessions.data?.sessions.map((s) => (
                  <li key={s.id} className="font-mono">
                    {s.id} · since {formatTime(s.created_at)}
                  </li>
                ))}
              </ul>
            )}
            <Button
              className="mt-2"
              variant="outline"
              size="sm"
              disabled={signOutAll.isPending || !sessions.data?.sessions.length}
              onClick={() => signOutAll.mutate(user.id, { onSuccess: () => setDone("Signed out everywhere") })}
            >
              Sign out everywhere
            </Button>
          </div>
        </div>
        <DialogFooter className="border-t pt-3">
          {confirmDelete ? (
            <>
              <Button variant="outline" onClick={() => setConfirmDelete(false)}>
                Keep
              </Button>
              <Button variant="destructive" onClick={() => del.mutate(user.id, { onSuccess: onClose })} disabled={del.isPending}>
                Delete for good
              </Button>
            </>
          ) : (
            <Button variant="destructive" onClick={() => setConfirmDelete(true)}>
              Delete user
            </Button>
          )}
        </DialogFooter>
      </DialogContent>
    </Dialog>
  );
}

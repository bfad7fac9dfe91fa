"use client";

import { useState } from "react";
import { AlertTriangle } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Dialog, DialogContent, DialogDescription, DialogFooter, DialogHeader, DialogTitle } from "@/components/ui/dialog";
import { Table, TableBody, TableCell, TableHead, TableHeader, TableRow } from "@/components/ui/table";
import { CopyButton } from "@/components/copy-button";
import { ErrorAlert } from "@/components/error-alert";
import { useRetireSigningKey, useRotateApiKeys, useRotateSigningKey, useSigningKeys } from "@/data/keys";
import type { RotatedApiKeys } from "@/lib/api";
import { formatTime } from "@/lib/utils";

export function KeysCard() {
  const keys = useSigningKeys(true);
  const rotate = useRotateSigningKey();
  const retire = useRetireSigningKey();
  const rotateApi = useRotateApiKeys();
  const [confirmApi, setConfirmApi] = useState(false);
  const [secrets, setSecrets] = useState<RotatedApiKeys | null>(null);
  // However the dialog closes (Done, Cancel, Escape), the new secrets are forgotten.
  const closeApiDialog = () => {
    setConfirmApi(false);
    setSecrets(null);
    rotateApi.reset();
  };

  return (
    <Card data-testid="keys-card">
      <CardHeader className="flex-row items-start justify-between gap-2 space-y-0">
        <div className="space-y-1.5">
          <CardTitle>Keys</CardTitle>
          <CardDescription>JWT signing keys{keys.data ? ` (${keys.data.algorithm})` : ""} and the API keys.</CardDescription>
        </div>
        <div className="flex flex-wrap justify-end gap-2">
          <Button size="sm" variant="outline" onClick={() => rotate.mutate()} data-testid="rotate-signing-key" disabled={rotate.isPending || keys.isError}>
            Rotate signing key
          </Button>
          <Button size="sm" variant="destructive" onClick={() => setConfirmApi(true)} data-testid="rotate-api-keys" disabled={keys.isError}>
            Rotate API keys
          </Button>
        </div>
      </CardHeader>
      <CardContent className="space-y-3">
        <ErrorAlert error={keys.error} />
        <ErrorAlert error={rotate.error ?? retire.error} />
        {keys.data && keys.data.signing_keys.length === 0 ? (
          <p className="text-sm text-muted-foreground">
            No asymmetric signing keys: tokens are signed with the shared {keys.data.algorithm} secret. Rotating adds an ES256 key.
          </p>
        ) : keys.data ? (
          <Table>
            <TableHeader>
              <TableRow>
                <TableHead>Key id</TableHead>
                <TableHead>Algorithm</TableHead>
                <TableHead>State</TableHead>
                <TableHead>Created</TableHead>
                <TableHead className="sr-only">Actions</TableHead>
              </TableRow>
            </TableHeader>
            <TableBody>
              {keys.data.signing_keys.map((k) => (
                <TableRow key={k.kid}>
                  <TableCell className="font-mono text-xs">{k.kid}</TableCell>
                  <TableCell>{k.alg}</TableCell>
                  <TableCell>
                    <Badge variant={k.state === "signing" ? "success" : k.state === "retired" ? "outline" : "secondary"}>{k.state}</Badge>
                  </TableCell>
                  <TableCell>{formatTime(k.created_at)}</TableCell>
                  <TableCell className="text-right">
                    {k.state === "verifying" ? (
                      <Button size="sm" variant="outline" onClick={() => retire.mutate(k.kid)} disabled={retire.isPending}>
                        Retire
                      </Button>
                    ) : null}
                  </TableCell>
                </TableRow>
              ))}
            </TableBody>
          </Table>
        ) : null}
      </CardContent>
      <Dialog open={confirmApi} onOpenChange={(o) => (o ? setConfirmApi(true) : closeApiDialog())}>
        <DialogContent>
          <DialogHeader>
            <DialogTitle>{secrets ? "New API keys" : "Rotate the API keys?"}</DialogTitle>
            <DialogDescription>
              {secrets
                ? "Copy them now: they are shown only once. The old keys no longer work; this tab now uses the new service key."
                : "Every client using the current anon or service key stops working until it gets the new ones. This tab switches to the new service key."}
            </DialogDescription>
          </DialogHeader>
          <ErrorAlert error={rotateApi.error} />
          {secrets ? (
            <div className="space-y-3">
              <div className="flex items-start gap-2 rounded-md border border-warning/60 bg-warning/10 p-2 text-sm">
                <AlertTriangle className="mt-0.5 h-4 w-4 shrink-0" aria-hidden /> These secrets will not be shown again.
              </div>
              {(["anon_key", "service_key"] as const).map((k) => (
                <div key={k} className="space-y-1" data-testid={`new-${k}`}>
                  <div className="flex items-center justify-between">
                    <span className="text-sm font-medium">{k}</span>
                    <CopyButton value={secrets[k]} />
                  </div>
                  <code className="block break-all rounded bg-muted p-2 text-xs" data-testid={`new-${k}-value`}>
                    {secrets[k]}
                  </code>
                </div>
              ))}
            </div>
          ) : null}
          <DialogFooter>
            {secrets ? (
              <Button onClick={closeApiDialog}>Done</Button>
            ) : (
              <>
                <Button variant="outline" onClick={closeApiDialog}>
                  Cancel
                </Button>
                <Button
                  variant="destructive"
                  disabled={rotateApi.isPending}
                  onClick={() => rotateApi.mutate(undefined, { onSuccess: (s) => setSecrets(s) })}
                  data-testid="rotate-api-keys-confirm"
                >
                  Rotate
                </Button>
              </>
            )}
          </DialogFooter>
        </DialogContent>
      </Dialog>
    </Card>
  );
}

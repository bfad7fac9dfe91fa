"use client";

import { useEffect, useState } from "react";
import { Plus, Search } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Skeleton } from "@/components/ui/skeleton";
import { Table, TableBody, TableCell, TableHead, TableHeader, TableRow } from "@/components/ui/table";
import { ErrorAlert } from "@/components/error-alert";
import { NotAllowed } from "@/components/not-allowed";
import { PageHeader } from "@/components/page-header";
import { Pagination } from "@/components/pagination";
import { CreateUserDialog } from "@/components/users/create-user-dialog";
import { isBanned, UserDialog } from "@/components/users/user-dialog";
import { useCurrentUser, useUsersPage } from "@/data/users";
import { usePrincipal } from "@/data/session";
import type { AuthUser } from "@/lib/api";
import { formatTime } from "@/lib/utils";

const PER_PAGE = 20;

function MeCard({ enabled }: { enabled: boolean }) {
  const me = useCurrentUser(enabled);
  if (!enabled) return null;
  return (
    <Card data-testid="me-card">
      <CardHeader>
        <CardTitle>Your account</CardTitle>
      </CardHeader>
      <CardContent>
        <ErrorAlert error={me.error} />
        {me.data ? (
          <dl className="grid grid-cols-[auto_1fr] gap-x-4 gap-y-1 text-sm">
            <dt className="text-muted-foreground">E-mail</dt>
            <dd className="break-all">{me.data.email}</dd>
            <dt className="text-muted-foreground">User id</dt>
            <dd className="break-all font-mono text-xs">{me.data.id}</dd>
            <dt className="text-muted-foreground">Role</dt>
            <dd>{me.data.role}</dd>
            <dt className="text-muted-foreground">Last sign-in</dt>
            <dd>{formatTime(me.data.last_sign_in_at)}</dd>
          </dl>
        ) : null}
      </CardContent>
    </Card>
  );
}

export default function UsersPage() {
  const { caps, principal } = usePrincipal();
  const canRead = caps["users.read"].allowed;
  const canWrite = caps["users.write"].allowed;
  const [page, setPage] = useState(1);
  const [filterInput, setFilterInput] = useState("");
  const [filter, setFilter] = useState("");
  const [creating, setCreating] = useState(false);
  const [selected, setSelected] = useState<AuthUser | null>(null);
  const users = useUsersPage(page, PER_PAGE, filter, canRead);

  useEffect(() => {
    const t = setTimeout(() => {
      setFilter(filterInput.trim());
      setPage(1);
    }, 300);
    return () => clearTimeout(t);
  }, [filterInput]);

  const total = users.data?.total ?? 0;
  const pages = Math.max(1, Math.ceil(total / PER_PAGE));

  return (
    <div className="space-y-4">
      <PageHeader title="Users" description="Accounts that sign in through /auth/v1.">
        <Button onClick={() => setCreating(true)} disabled={!canWrite} title={canWrite ? undefined : `Creating users ${caps["users.write"].reason}`} data-testid="new-user">
          <Plus aria-hidden /> New user
        </Button>
      </PageHeader>
      <MeCard enabled={!!principal?.userId && !principal.serviceRole} />
      {!canRead ? (
        <NotAllowed what="The user list is hidden" reason={caps["users.read"].reason} />
      ) : (
        <Card>
          <CardHeader className="flex-col gap-2 sm:flex-row sm:items-end sm:justify-between sm:space-y-0">
            <div className="space-y-1.5">
              <CardTitle>All users</CardTitle>
              <CardDescription>{users.data ? `${total} ${filter ? `matching “${filter}”` : "in all"}` : " "}</CardDescription>
            </div>
            <div className="relative w-full sm:w-72">
              <Search className="pointer-events-none absolute left-2.5 top-2.5 h-4 w-4 text-muted-foreground" aria-hidden />
              <label htmlFor="user-filter" className="sr-only">
                Filter by e-mail
              </label>
              <Input id="user-filter" className="pl-8" placeholder="Filter by e-mail" value={filterInput} onChange={(e) => setFilterInput(e.target.value)} />
            </div>
          </CardHeader>
          <CardContent>
            <ErrorAlert error={users.error} />
            {users.isPending ? (
              <Skeleton className="h-32 w-full" />
            ) : users.data && users.data.users.length === 0 ? (
              <p className="py-6 text-center text-sm text-muted-foreground">No users.</p>
            ) : users.data ? (
              <Table data-testid="users-table">
                <TableHeader>
                  <TableRow>
                    <TableHead>E-mail</TableHead>
                    <TableHead>Status</TableHead>
                    <TableHead className="hidden sm:table-cell">Created</TableHead>
                    <TableHead className="hidden sm:table-cell">Last sign-in</TableHead>
                  </TableRow>
                </TableHeader>
                <TableBody>
                  {users.data.users.map((u) => (
                    <TableRow key={u.id} data-user={u.email ?? u.id}>
                      <TableCell>
                        <button type="button" className="text-left font-medium underline-offset-4 hover:underline" onClick={() => setSelected(u)}>
                          {u.email ?? u.id}
                        </button>
                        <div className="hidden font-mono text-xs text-muted-foreground md:block">{u.id}</div>
                      </TableCell>
                      <TableCell className="space-x-1">
                        {isBanned(u) ? <Badge variant="destructive">banned</Badge> : null}
                        {u.email_confirmed_at ? <Badge variant="secondary">confirmed</Badge> : <Badge variant="warning">unconfirmed</Badge>}
                      </TableCell>
                      <TableCell className="hidden sm:table-cell">{formatTime(u.created_at)}</TableCell>
                      <TableCell className="hidden sm:table-cell">{formatTime(u.last_sign_in_at)}</TableCell>
                    </TableRow>
                  ))}
                </TableBody>
              </Table>
            ) : null}
            <Pagination
              label={`Page ${page} of ${pages}`}
              hasPrev={page > 1}
              hasNext={page < pages}
              onPrev={() => setPage((p) => p - 1)}
              onNext={() => setPage((p) => p + 1)}
              busy={users.isFetching}
            />
          </CardContent>
        </Card>
      )}
      <CreateUserDialog open={creating} onOpenChange={setCreating} />
      {selected ? <UserDialog user={selected} onClose={() => setSelected(null)} /> : null}
    </div>
  );
}

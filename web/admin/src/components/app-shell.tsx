"use client";

import Link from "next/link";
import { usePathname, useRouter } from "next/navigation";
import { useEffect, useState } from "react";
import { Activity, Database, LayoutDashboard, LogOut, Menu, ScrollText, Shield, Users, X } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Badge } from "@/components/ui/badge";
import { ThemeToggle } from "@/components/theme-toggle";
import { usePrincipal, useSignOut } from "@/data/session";
import { cn } from "@/lib/utils";

export const NAV = [
  { href: "/dashboard/", label: "Overview", icon: LayoutDashboard },
  { href: "/policies/", label: "Policies", icon: Shield },
  { href: "/users/", label: "Users", icon: Users },
  { href: "/monitoring/", label: "Telemetry", icon: Activity },
  { href: "/audit/", label: "Audit", icon: ScrollText },
] as const;

function NavLinks({ onNavigate, vertical }: { onNavigate?: () => void; vertical?: boolean }) {
  const pathname = usePathname();
  return (
    <ul className={cn("flex gap-1", vertical ? "flex-col" : "items-center")}>
      {NAV.map(({ href, label, icon: Icon }) => {
        const active = pathname === href || pathname === href.slice(0, -1);
        return (
          <li key={href}>
            <Link
              href={href}
              onClick={onNavigate}
              aria-current={active ? "page" : undefined}
              className={cn(
                "flex items-center gap-2 rounded-md px-3 py-2 text-sm font-medium transition-colors hover:bg-accent hover:text-accent-foreground",
                active ? "bg-accent text-accent-foreground" : "text-muted-foreground",
              )}
            >
              <Icon className="h-4 w-4" aria-hidden />
              {label}
            </Link>
          </li>
        );
      })}
    </ul>
  );
}

export function AppShell({ children }: { children: React.ReactNode }) {
  const router = useRouter();
  const { session, principal } = usePrincipal();
  const signOut = useSignOut();
  const [open, setOpen] = useState(false);

  useEffect(() => {
    if (session === null) router.replace("/sign-in/");
  }, [session, router]);

  if (!session || !principal) {
    return (
      <div className="flex min-h-screen items-center justify-center text-sm text-muted-foreground" role="status">
        Loading…
      </div>
    );
  }

  const who = principal.serviceRole ? "service role" : (principal.email ?? principal.userId ?? principal.role);

  return (
    <div className="min-h-screen">
      <header className="sticky top-0 z-40 border-b bg-background/95 backdrop-blur">
        <div className="mx-auto flex h-14 max-w-7xl items-center gap-3 px-3 sm:px-6">
          <Button
            variant="ghost"
            size="icon"
            className="md:hidden"
            aria-label={open ? "Close navigation" : "Open navigation"}
            aria-expanded={open}
            aria-controls="mobile-nav"
            onClick={() => setOpen((o) => !o)}
            data-testid="nav-toggle"
          >
            {open ? <X aria-hidden /> : <Menu aria-hidden />}
          </Button>
          <Link href="/dashboard/" className="flex items-center gap-2 font-semibold">
            <Database className="h-5 w-5" aria-hidden />
            <span>bkg-db</span>
          </Link>
          <nav aria-label="Main" className="ml-4 hidden md:block">
            <NavLinks />
          </nav>
          <div className="ml-auto flex items-center gap-2">
            <div className="hidden text-right sm:block" data-testid="principal">
              <p className="max-w-[14rem] truncate text-sm font-medium">{who}</p>
              <p className="text-xs text-muted-foreground">
                {principal.role}
                {principal.admin ? " · admin" : ""}
              </p>
            </div>
            {principal.admin ? (
              <Badge variant="secondary" className="hidden sm:inline-flex">
                admin
              </Badge>
            ) : null}
            <ThemeToggle />
            <Button
              variant="outline"
              size="sm"
              onClick={() => signOut.mutate(undefined, { onSettled: () => router.replace("/sign-in/") })}
              data-testid="sign-out"
            >
              <LogOut aria-hidden />
              <span className="hidden sm:inline">Sign out</span>
              <span className="sr-only sm:hidden">Sign out</span>
            </Button>
          </div>
        </div>
        {open ? (
          <nav id="mobile-nav" aria-label="Main" className="border-t px-3 py-2 md:hidden">
            <p className="px-3 pb-2 text-xs text-muted-foreground">
              Signed in as {who} ({principal.role})
            </p>
            <NavLinks vertical onNavigate={() => setOpen(false)} />
          </nav>
        ) : null}
      </header>
      <main className="mx-auto max-w-7xl px-3 py-4 sm:px-6 sm:py-6">{children}</main>
    </div>
  );
}

"use client";

import { useRouter } from "next/navigation";
import { useEffect } from "react";
import { useSession } from "@/data/session";

export default function Home() {
  const router = useRouter();
  const session = useSession();
  useEffect(() => {
    if (session === undefined) return;
    router.replace(session ? "/dashboard/" : "/sign-in/");
  }, [session, router]);
  return (
    <main className="flex min-h-screen items-center justify-center text-sm text-muted-foreground" role="status">
      Loading…
    </main>
  );
}

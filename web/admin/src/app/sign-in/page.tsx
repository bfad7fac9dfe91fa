"use client";

import { useRouter } from "next/navigation";
import { useEffect, useState } from "react";
import { Database, KeyRound, Mail } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import { Tabs, TabsContent, TabsList, TabsTrigger } from "@/components/ui/tabs";
import { Textarea } from "@/components/ui/textarea";
import { ErrorAlert } from "@/components/error-alert";
import { ThemeToggle } from "@/components/theme-toggle";
import { useBootstrap, usePasswordSignIn, useServiceKeySignIn, useSession } from "@/data/session";

export default function SignInPage() {
  const router = useRouter();
  const session = useSession();
  const bootstrap = useBootstrap();
  const serviceSignIn = useServiceKeySignIn();
  const passwordSignIn = usePasswordSignIn();
  const [key, setKey] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [anonKey, setAnonKey] = useState("");

  useEffect(() => {
    if (session) router.replace("/dashboard/");
  }, [session, router]);

  const bootstrapAnon = bootstrap.data?.anon_key ?? "";
  const needAnonKey = bootstrap.isError;

  return (
    <main className="flex min-h-screen flex-col items-center justify-center gap-4 p-3">
      <div className="absolute right-3 top-3">
        <ThemeToggle />
      </div>
      <Card className="w-full max-w-md">
        <CardHeader>
          <div className="flex items-center gap-2">
            <Database className="h-6 w-6" aria-hidden />
            <CardTitle>
              <span className="text-xl">Sign in to bkg-db</span>
            </CardTitle>
          </div>
          <CardDescription>
            {bootstrap.data ? `Server version ${bootstrap.data.version}. ` : ""}
            Your credentials stay in this browser tab (session storage) and are cleared at sign-out.
          </CardDescription>
        </CardHeader>
        <CardContent>
          <Tabs defaultValue="service">
            <TabsList className="grid w-full grid-cols-2">
              <TabsTrigger value="service">
                <KeyRound className="mr-1 h-4 w-4" aria-hidden /> Service key
              </TabsTrigger>
              <TabsTrigger value="password">
                <Mail className="mr-1 h-4 w-4" aria-hidden /> E-mail
              </TabsTrigger>
            </TabsList>
            <TabsContent value="service">
              <form
                className="space-y-3"
                onSubmit={(e) => {
                  e.preventDefault();
                  serviceSignIn.mutate(key, { onSuccess: () => router.replace("/dashboard/") });
                }}
              >
                <div className="space-y-1.5">
                  <Label htmlFor="service-key">Service key</Label>
                  <Textarea
                    id="service-key"
                    name="service-key"
                    value={key}
                    onChange={(e) => setKey(e.target.value)}
                    placeholder="eyJhbGciOi…"
                    rows={4}
                    autoComplete="off"
                    spellCheck={false}
                    required
                  />
                  <p className="text-xs text-muted-foreground">
                    The <code>service_key</code> from <code>auth/keys.json</code> in the data directory.
                  </p>
                </div>
                <ErrorAlert error={serviceSignIn.error} title="Sign-in failed" />
                <Button type="submit" className="w-full" disabled={serviceSignIn.isPending || !key.trim()}>
                  {serviceSignIn.isPending ? "Checking…" : "Sign in with the service key"}
                </Button>
              </form>
            </TabsContent>
            <TabsContent value="password">
              <form
                className="space-y-3"
                onSubmit={(e) => {
                  e.preventDefault();
                  passwordSignIn.mutate(
                    { email, password, anonKey: bootstrapAnon || anonKey },
                    { onSuccess: () => router.replace("/dashboard/") },
                  );
                }}
              >
                <div className="space-y-1.5">
                  <Label htmlFor="email">E-mail</Label>
                  <Input id="email" name="email" type="email" autoComplete="username" value={email} onChange={(e) => setEmail(e.target.value)} required />
                </div>
                <div className="space-y-1.5">
                  <Label htmlFor="password">Password</Label>
                  <Input
                    id="password"
                    name="password"
                    type="password"
                    autoComplete="current-password"
                    value={password}
                    onChange={(e) => setPassword(e.target.value)}
                    required
                  />
                </div>
                {needAnonKey ? (
                  <div className="space-y-1.5">
                    <Label htmlFor="anon-key">Anon key</Label>
                    <Input
                      id="anon-key"
                      name="anon-key"
                      value={anonKey}
                      onChange={(e) => setAnonKey(e.target.value)}
                      autoComplete="off"
                      spellCheck={false}
                      required
                    />
                    <p className="text-xs text-muted-foreground">
                      This server does not publish its anon key at <code>/admin/bootstrap</code> (
                      {bootstrap.error instanceof Error ? bootstrap.error.message : "unavailable"}); paste the{" "}
                      <code>anon_key</code> from <code>auth/keys.json</code>.
                    </p>
                  </div>
                ) : null}
                <ErrorAlert error={passwordSignIn.error} title="Sign-in failed" />
                <Button
                  type="submit"
                  className="w-full"
                  disabled={passwordSignIn.isPending || !email || !password || (!bootstrapAnon && !anonKey.trim())}
                >
                  {passwordSignIn.isPending ? "Signing in…" : "Sign in"}
                </Button>
              </form>
            </TabsContent>
          </Tabs>
        </CardContent>
      </Card>
    </main>
  );
}

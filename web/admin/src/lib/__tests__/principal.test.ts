import { describe, expect, it } from "vitest";
import { capabilitiesFor, principalFrom, REASON_ADMIN, REASON_SERVICE } from "@/lib/principal";

function jwt(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => btoa(JSON.stringify(o)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.sig`;
}

describe("principal → capabilities", () => {
  it("the service key may do everything", () => {
    const p = principalFrom(jwt({ role: "service_role", iss: "bkg-db" }));
    expect(p).toMatchObject({ role: "service_role", serviceRole: true, admin: true, source: "token" });
    const caps = capabilitiesFor(p);
    for (const c of Object.values(caps)) expect(c).toEqual({ allowed: true, reason: null });
  });

  it("a plain user may only list tables, with reasons for the rest", () => {
    const p = principalFrom(jwt({ role: "authenticated", sub: "u1", email: "a@example.com" }));
    expect(p).toMatchObject({ userId: "u1", email: "a@example.com", admin: false, serviceRole: false });
    const caps = capabilitiesFor(p);
    expect(caps["tables.list"].allowed).toBe(true);
    expect(caps["policies.write"]).toEqual({ allowed: false, reason: REASON_ADMIN });
    expect(caps["telemetry.write"].reason).toBe("needs the service role or the admin scope");
    expect(caps["users.read"]).toEqual({ allowed: false, reason: REASON_SERVICE });
    expect(caps["audit.read"].allowed).toBe(false);
  });

  it("a user with the admin scope is admin but not the service role", () => {
    const p = principalFrom(jwt({ role: "authenticated", sub: "u2", scope: "openid admin" }));
    const caps = capabilitiesFor(p);
    expect(p.admin).toBe(true);
    expect(caps["policies.write"].allowed).toBe(true);
    expect(caps["audit.read"].allowed).toBe(true);
    expect(caps["users.write"]).toEqual({ allowed: false, reason: REASON_SERVICE });
    expect(caps["keys.manage"].allowed).toBe(false);
  });

  it("the server's whoami wins over the token's claims", () => {
    const p = principalFrom(jwt({ role: "authenticated", sub: "u3" }), { role: "authenticated", user_id: "u3", email: "x@y.z", admin: true });
    expect(p).toMatchObject({ admin: true, source: "whoami", email: "x@y.z" });
  });

  it("no session: nothing is allowed; a garbage token is anon", () => {
    expect(capabilitiesFor(null)["tables.list"]).toEqual({ allowed: false, reason: "sign in first" });
    expect(principalFrom("not-a-jwt")).toMatchObject({ role: "anon", admin: false });
  });
});

import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : /\.(ts|tsx)$/.test(n) && !/\.test\.tsx?$/.test(n) ? [p] : [];
  });
}

describe("one API client", () => {
  it("only src/lib/api calls fetch, and no source touches localStorage for tokens", () => {
    const offenders = files(SRC).filter((f) => !f.includes(join("lib", "api")) && /\bfetch\s*\(/.test(readFileSync(f, "utf8")));
    expect(offenders).toEqual([]);
    const session = readFileSync(join(SRC, "lib", "session.ts"), "utf8");
    expect(session).toContain("sessionStorage");
    expect(session).not.toContain("localStorage");
  });
});

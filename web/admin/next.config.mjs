// Static export for production (embedded by the bkg-db binary at /admin/);
// in development the dev server proxies API calls to a running bkg-db.
import { PHASE_DEVELOPMENT_SERVER } from "next/constants.js";

const API_PREFIXES = [
  "/admin/:path*",
  "/auth/v1/:path*",
  "/rest/v1/:path*",
  "/storage/v1/:path*",
  "/realtime/v1/:path*",
  "/policy/:path*",
  "/policy",
  "/audit/:path*",
  "/audit",
  "/query",
  "/healthz",
  "/metrics",
  "/openapi.json",
];

/** @param {string} phase */
export default function config(phase) {
  /** @type {import('next').NextConfig} */
  const base = {
    basePath: "/admin",
    trailingSlash: true,
    images: { unoptimized: true },
    reactStrictMode: true,
    poweredByHeader: false,
    productionBrowserSourceMaps: false,
  };
  if (phase === PHASE_DEVELOPMENT_SERVER) {
    const target = (process.env.BKG_DB_URL || "http://127.0.0.1:8080").replace(/\/$/, "");
    return {
      ...base,
      // API paths have no trailing slash (/admin/whoami): do not redirect them to /admin/whoami/.
      skipTrailingSlashRedirect: true,
      async rewrites() {
        // basePath: false so that /auth/v1/... (outside /admin) is proxied too.
        // /admin/<api> paths are proxied only when no page matches (fallback).
        return {
          beforeFiles: [],
          afterFiles: API_PREFIXES.filter((p) => !p.startsWith("/admin")).map((source) => ({
            source,
            destination: `${target}${source}`,
            basePath: false,
          })),
          fallback: [
            { source: "/admin/:path*", destination: `${target}/admin/:path*`, basePath: false },
          ],
        };
      },
    };
  }
  return { ...base, output: "export" };
}

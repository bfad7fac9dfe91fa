import type { Metadata, Viewport } from "next";
import { Providers } from "./providers";
import "./globals.css";

export const metadata: Metadata = {
  title: "bkg-db admin",
  description: "Administration of a bkg-db server",
  robots: { index: false, follow: false },
};

export const viewport: Viewport = { width: "device-width", initialScale: 1 };

export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (
    <html lang="en" suppressHydrationWarning>
      <head>
        {/* An external file, so the strict CSP (script-src 'self') allows it; it sets the theme before paint. */}
        {/* eslint-disable-next-line @next/next/no-sync-scripts */}
        <script src="/admin/theme.js" />
      </head>
      <body>
        <Providers>{children}</Providers>
      </body>
    </html>
  );
}

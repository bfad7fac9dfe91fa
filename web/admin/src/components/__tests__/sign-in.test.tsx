import { QueryClientProvider } from "@tanstack/react-query";
import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { makeQueryClient } from "@/data/query-client";
import { readSession } from "@/lib/session";

const replace = vi.fn();
vi.mock("next/navigation", () => ({ useRouter: () => ({ replace, push: vi.fn() }), usePathname: () => "/sign-in/" }));

import SignInPage from "@/app/sign-in/page";
import { ThemeProvider } from "@/lib/theme";

function b64(o: unknown) {
  return btoa(JSON.stringify(o)).replace(/=+$/, "");
}
const SERVICE = `${b64({ alg: "HS256" })}.${b64({ role: "service_role" })}.sig`;

function renderPage() {
  return render(
    <ThemeProvider>
      <QueryClientProvider client={makeQueryClient()}>
        <SignInPage />
      </QueryClientProvider>
    </ThemeProvider>,
  );
}

afterEach(() => vi.unstubAllGlobals());

describe("sign-in page", () => {
  it("keeps the service key in sessionStorage after the server accepts it", async () => {
    window.matchMedia = vi.fn().mockReturnValue({ matches: false, addEventListener: vi.fn(), removeEventListener: vi.fn() });
    const fetchMock = vi.fn(async (url: string) => {
      if (url === "/admin/bootstrap") return new Response(JSON.stringify({ code: "PGRST125", message: "Invalid path" }), { status: 404 });
      if (url === "/admin/whoami") return new Response(JSON.stringify({ role: "service_role", user_id: null, email: null, admin: true }), { status: 200 });
      return new Response("{}", { status: 200 });
    });
    vi.stubGlobal("fetch", fetchMock);
    renderPage();
    await userEvent.type(screen.getByRole("textbox", { name: "Service key" }), SERVICE);
    await userEvent.click(screen.getByRole("button", { name: /sign in with the service key/i }));
    await waitFor(() => expect(readSession()?.kind).toBe("service"));
    expect(readSession()?.token).toBe(SERVICE);
    expect(window.localStorage.length).toBe(0);
    expect(replace).toHaveBeenCalledWith("/dashboard/");
  });

  it("shows the server's error code and message when the key is refused", async () => {
    window.matchMedia = vi.fn().mockReturnValue({ matches: false, addEventListener: vi.fn(), removeEventListener: vi.fn() });
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) =>
        url === "/admin/whoami"
          ? new Response(JSON.stringify({ code: "PGRST301", message: "invalid JWT signature" }), { status: 401 })
          : new Response(JSON.stringify({ version: "0.1.0", anon_key: "A" }), { status: 200 }),
      ),
    );
    renderPage();
    await userEvent.type(screen.getByRole("textbox", { name: "Service key" }), SERVICE);
    await userEvent.click(screen.getByRole("button", { name: /sign in with the service key/i }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("PGRST301");
    expect(alert).toHaveTextContent("invalid JWT signature");
    expect(readSession()).toBeNull();
  });
});

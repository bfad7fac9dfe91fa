import { ENDPOINTS, fillPath, type EndpointName } from "./endpoints";
import { ApiError, errorFromBody } from "./errors";

export interface Credentials {
  /** Sent as the `apikey` header (the service key, or the anon key for a user). */
  apikey: string;
  /** Sent as `Authorization: Bearer` (the service key, or the user's access token). */
  token: string;
}

export interface RequestOptions {
  params?: Record<string, string>;
  query?: Record<string, string | number | boolean | null | undefined>;
  body?: unknown;
  /** Credentials for this call only (e.g. the anon key at sign-in); `null` sends none. */
  auth?: Credentials | null;
  signal?: AbortSignal;
}

export interface ApiResponse<T> {
  data: T;
  status: number;
  headers: Headers;
}

export interface ClientConfig {
  baseUrl?: string;
  getCredentials: () => Credentials | null;
  fetch?: typeof fetch;
  /**
   * Called once when the server answers 401 to a call made with the session's credentials:
   * new credentials (the call is retried with them) or null (then onUnauthorized).
   */
  refresh?: () => Promise<Credentials | null>;
  /** Called when the server answers 401 to a call made with the session's credentials. */
  onUnauthorized?: (error: ApiError) => void;
}

export function buildQuery(query: RequestOptions["query"]): string {
  if (!query) return "";
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === "") continue;
    sp.set(k, String(v));
  }
  const s = sp.toString();
  return s ? `?${s}` : "";
}

export class ApiClient {
  private readonly config: ClientConfig;

  constructor(config: ClientConfig) {
    this.config = config;
  }

  async request<T>(name: EndpointName, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    try {
      return await this.send<T>(name, opts);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401 || opts.auth !== undefined) throw e;
      const fresh = this.config.refresh ? await this.config.refresh().catch(() => null) : null;
      if (fresh) {
        try {
          return await this.send<T>(name, { ...opts, auth: fresh });
        } catch (e2) {
          if (e2 instanceof ApiError && e2.status === 401) this.config.onUnauthorized?.(e2);
          throw e2;
        }
      }
      this.config.onUnauthorized?.(e);
      throw e;
    }
  }

  private async send<T>(name: EndpointName, opts: RequestOptions): Promise<ApiResponse<T>> {
    const ep = ENDPOINTS[name];
    const path = fillPath(ep.path, opts.params) + buildQuery(opts.query);
    const url = (this.config.baseUrl ?? "") + path;
    const creds = opts.auth === undefined ? this.config.getCredentials() : opts.auth;
    const headers: Record<string, string> = { accept: "application/json" };
    if (creds) {
      headers.apikey = creds.apikey;
      headers.authorization = `Bearer ${creds.token}`;
    }
    let body: string | undefined;
    if (opts.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    const doFetch = this.config.fetch ?? globalThis.fetch.bind(globalThis);
    let res: Response;
    try {
      res = await doFetch(url, { method: ep.method, headers, body, signal: opts.signal, cache: "no-store" });
    } catch (e) {
      if (e instanceof DOMException && e.name === "AbortError") throw e;
      throw new ApiError({
        status: 0,
        code: "NETWORK",
        message: `Could not reach the server: ${e instanceof Error ? e.message : String(e)}`,
        method: ep.method,
        path,
      });
    }
    const text = await res.text();
    const ctype = res.headers.get("content-type") ?? "";
    let parsed: unknown = text;
    if (text && (ctype.includes("json") || /^[[{]/.test(text.trim()))) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    } else if (!text) {
      parsed = null;
    }
    if (!res.ok) throw errorFromBody(res.status, parsed, ep.method, path, res.statusText);
    return { data: parsed as T, status: res.status, headers: res.headers };
  }
}

/** An error answered by the API (or the network), normalised to code + message. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: string | null;
  readonly hint: string | null;
  readonly method: string;
  readonly path: string;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    details?: string | null;
    hint?: string | null;
    method: string;
    path: string;
  }) {
    super(init.message);
    this.name = "ApiError";
    this.status = init.status;
    this.code = init.code;
    this.details = init.details ?? null;
    this.hint = init.hint ?? null;
    this.method = init.method;
    this.path = init.path;
  }

  /** The endpoint does not exist on this server (yet). */
  get isMissingEndpoint(): boolean {
    return this.status === 404 && (this.code === "PGRST125" || this.code === "HTTP_404");
  }

  get isForbidden(): boolean {
    return this.status === 403 || this.code === "42501";
  }

  get isUnauthorized(): boolean {
    return this.status === 401;
  }
}

function str(v: unknown): string | null {
  if (v == null) return null;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

/**
 * Builds an ApiError from a response body. REST errors are `{code, message, details, hint}`;
 * auth errors are `{code: <http status>, error_code, msg}` (GoTrue style).
 */
export function errorFromBody(
  status: number,
  body: unknown,
  method: string,
  path: string,
  statusText = "",
): ApiError {
  if (body && typeof body === "object" && !Array.isArray(body)) {
    const b = body as Record<string, unknown>;
    if (typeof b.error_code === "string" || typeof b.msg === "string") {
      return new ApiError({
        status,
        code: str(b.error_code) ?? str(b.code) ?? `HTTP_${status}`,
        message: str(b.msg) ?? str(b.message) ?? (statusText || `HTTP ${status}`),
        details: str(b.details),
        hint: str(b.hint),
        method,
        path,
      });
    }
    if ("code" in b || "message" in b) {
      return new ApiError({
        status,
        code: str(b.code) ?? `HTTP_${status}`,
        message: str(b.message) ?? (statusText || `HTTP ${status}`),
        details: str(b.details),
        hint: str(b.hint),
        method,
        path,
      });
    }
    if (typeof b.error === "string") {
      return new ApiError({
        status,
        code: str(b.error) ?? `HTTP_${status}`,
        message: str(b.error_description) ?? str(b.error) ?? `HTTP ${status}`,
        method,
        path,
      });
    }
  }
  const text = typeof body === "string" && body.trim() ? body.trim().slice(0, 300) : "";
  return new ApiError({
    status,
    code: `HTTP_${status}`,
    message: text || statusText || `HTTP ${status}`,
    method,
    path,
  });
}

export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new ApiError({ status: 0, code: "CLIENT", message, method: "", path: "" });
}

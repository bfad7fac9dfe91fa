import { AlertCircle } from "lucide-react";
import { Alert, AlertDescription, AlertTitle } from "@/components/ui/alert";
import { ApiError, toApiError } from "@/lib/api";

/** Shows an API error with its code and message (and details, hint, and the call that failed). */
export function ErrorAlert({ error, title, className }: { error: unknown; title?: string; className?: string }) {
  if (!error) return null;
  const e: ApiError = toApiError(error);
  return (
    <Alert variant="destructive" className={className} data-testid="api-error" data-code={e.code}>
      <AlertCircle className="h-4 w-4" aria-hidden />
      <div>
        <AlertTitle>
          {title ?? (e.isMissingEndpoint ? "Not available on this server" : "Request failed")}{" "}
          <code className="ml-1 rounded bg-destructive/15 px-1 py-0.5 text-xs font-semibold">{e.code}</code>
        </AlertTitle>
        <AlertDescription>
          <p className="break-words">{e.message}</p>
          {e.details ? <p className="mt-1 break-words text-muted-foreground">Details: {e.details}</p> : null}
          {e.hint ? <p className="mt-1 break-words text-muted-foreground">Hint: {e.hint}</p> : null}
          {e.method ? (
            <p className="mt-1 break-all font-mono text-xs text-muted-foreground">
              {e.status ? `HTTP ${e.status} ` : ""}
              {e.method} {e.path}
            </p>
          ) : null}
        </AlertDescription>
      </div>
    </Alert>
  );
}

import { Lock } from "lucide-react";
import { Alert, AlertDescription, AlertTitle } from "@/components/ui/alert";

/** Stands in for a control or section the principal may not use, with the reason. */
export function NotAllowed({ what, reason }: { what: string; reason: string | null }) {
  return (
    <Alert data-testid="not-allowed">
      <Lock className="h-4 w-4" aria-hidden />
      <div>
        <AlertTitle>{what}</AlertTitle>
        <AlertDescription className="text-muted-foreground">This {reason ?? "is not allowed"}.</AlertDescription>
      </div>
    </Alert>
  );
}

import { ChevronLeft, ChevronRight } from "lucide-react";
import { Button } from "@/components/ui/button";

export function Pagination({
  label,
  onPrev,
  onNext,
  hasPrev,
  hasNext,
  busy,
}: {
  label: string;
  onPrev: () => void;
  onNext: () => void;
  hasPrev: boolean;
  hasNext: boolean;
  busy?: boolean;
}) {
  return (
    <nav className="flex items-center justify-between gap-2 pt-3" aria-label="Pagination">
      <p className="text-sm text-muted-foreground" aria-live="polite">
        {label}
      </p>
      <div className="flex gap-2">
        <Button variant="outline" size="sm" onClick={onPrev} disabled={!hasPrev || busy}>
          <ChevronLeft aria-hidden /> Previous
        </Button>
        <Button variant="outline" size="sm" onClick={onNext} disabled={!hasNext || busy}>
          Next <ChevronRight aria-hidden />
        </Button>
      </div>
    </nav>
  );
}

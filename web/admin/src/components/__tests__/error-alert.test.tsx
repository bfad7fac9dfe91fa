import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { ErrorAlert } from "@/components/error-alert";
import { NotAllowed } from "@/components/not-allowed";
import { ApiError } from "@/lib/api";

describe("ErrorAlert", () => {
  it("shows the code, the message, details, hint and the call", () => {
    render(
      <ErrorAlert
        error={new ApiError({ status: 400, code: "42710", message: 'policy "p" already exists', details: "dup", hint: "rename it", method: "POST", path: "/policy" })}
      />,
    );
    const alert = screen.getByRole("alert");
    expect(alert).toHaveTextContent("42710");
    expect(alert).toHaveTextContent('policy "p" already exists');
    expect(alert).toHaveTextContent("Details: dup");
    expect(alert).toHaveTextContent("Hint: rename it");
    expect(alert).toHaveTextContent("HTTP 400 POST /policy");
  });

  it("labels a missing endpoint and renders nothing without an error", () => {
    const { container, rerender } = render(<ErrorAlert error={null} />);
    expect(container).toBeEmptyDOMElement();
    rerender(<ErrorAlert error={new ApiError({ status: 404, code: "PGRST125", message: "Invalid path", method: "GET", path: "/admin/overview" })} />);
    expect(screen.getByRole("alert")).toHaveTextContent("Not available on this server");
  });

  it("NotAllowed states the reason", () => {
    render(<NotAllowed what="The audit log is hidden" reason="needs the service role or the admin scope" />);
    expect(screen.getByRole("alert")).toHaveTextContent("This needs the service role or the admin scope.");
  });
});

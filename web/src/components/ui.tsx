//! Shared pieces: loading, empty and error states, the spinner, notices, the health light and a
//! modal dialog (native `<dialog>`: focus stays inside, Escape closes it).
import { useEffect, useId, useRef, type ReactNode } from "react";
import { ApiError, errorText, type Health } from "../api/client";
import type { Polled } from "../hooks";

export function Spinner({ label = "Loading" }: { label?: string }) {
  return <span className="spinner" role="status" aria-label={label} />;
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="state" aria-live="polite">
      <Spinner label={`Loading ${what}`} /> Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="state empty">{children}</p>;
}

/** An error from the API: its title and detail, and the per-field `errors` when present. */
export function ErrorState({ error, retry }: { error: unknown; retry?: () => void }) {
  return (
    <div className="state error" role="alert">
      <p>{errorText(error)}</p>
      <FieldErrors error={error} />
      {retry && (
        <button type="button" onClick={retry}>
          Try again
        </button>
      )}
    </div>
  );
}

function FieldErrors({ error }: { error: unknown }) {
  if (!(error instanceof ApiError) || !error.problem.errors) return null;
  const errors = error.problem.errors;
  const lines: string[] = Array.isArray(errors)
    ? errors.map((e) => (typeof e === "string" ? e : JSON.stringify(e)))
    : typeof errors === "object"
      ? Object.entries(errors as Record<string, unknown>).map(([k, v]) => `${k}: ${String(v)}`)
      : [String(errors)];
  return (
    <ul>
      {lines.map((l) => (
        <li key={l}>{l}</li>
      ))}
    </ul>
  );
}

export function Notice({
  kind,
  children,
  onClose,
}: {
  kind: "success" | "error" | "info";
  children: ReactNode;
  onClose?: () => void;
}) {
  return (
    <div className={`notice ${kind}`} role={kind === "error" ? "alert" : "status"}>
      <div>{children}</div>
      {onClose && (
        <button type="button" className="link" onClick={onClose} aria-label="Dismiss notice">
          ×
        </button>
      )}
    </div>
  );
}

export function HealthLight({ status }: { status: "healthy" | "degraded" | "failed" | "unknown" }) {
  return (
    <span className={`light ${status}`}>
      <span className="dot" aria-hidden="true" />
      {status === "unknown" ? "Health unknown" : status.charAt(0).toUpperCase() + status.slice(1)}
    </span>
  );
}

/** A modal dialog: opened with showModal (the page behind is inert), Escape or Cancel closes it. */
export function Dialog({
  open,
  title,
  onClose,
  children,
}: {
  open: boolean;
  title: string;
  onClose: () => void;
  children: ReactNode;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={ref} aria-labelledby={titleId} onClose={onClose} onCancel={onClose}>
      {open && (
        <>
          <h2 id={titleId}>{title}</h2>
          {children}
        </>
      )}
    </dialog>
  );
}

/** The loading or error state of a polled screen that has no data yet, else null. */
export function notLoaded<T>(polled: Polled<T>, what: string): ReactNode {
  if (polled.data !== undefined) return null;
  if (polled.loading) return <Loading what={what} />;
  return <ErrorState error={polled.error} retry={() => void polled.reload()} />;
}

export function HealthReasons({ reasons }: { reasons: Health["reasons"] }) {
  if (reasons.length === 0) return null;
  return (
    <ul className="reasons" aria-label="Health reasons">
      {reasons.map((r) => (
        <li key={r.code + r.message} className={r.severity}>
          {r.message}
        </li>
      ))}
    </ul>
  );
}

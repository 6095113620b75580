//! Formatting for people: relative times ("2h ago", "in 12 min"), dates, JSON values, names.
import type { Provider } from "./api/client";

export function relative(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "never";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const diff = t - now;
  const abs = Math.abs(diff);
  let text: string;
  if (abs < 45_000) return diff < 0 ? "just now" : "now";
  if (abs < 3_600_000) text = `${Math.round(abs / 60_000)} min`;
  else if (abs < 86_400_000) text = `${Math.round(abs / 3_600_000)}h`;
  else text = `${Math.round(abs / 86_400_000)}d`;
  return diff < 0 ? `${text} ago` : `in ${text}`;
}

export function dateTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? iso : t.toLocaleString();
}

export function value(v: unknown): string {
  if (v === undefined) return "—";
  if (v === null) return "(empty)";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

export function duration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function label(code: string): string {
  const s = code.replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** The providers a tenant can connect: through the provider's consent page (`oauth`), or with an
 * API key the user pastes (`key`: Fireflies, which has no OAuth for third parties). */
export const PROVIDERS: { id: Provider; name: string; connect: "oauth" | "key" }[] = [
  { id: "hubspot", name: "HubSpot", connect: "oauth" },
  { id: "salesforce", name: "Salesforce", connect: "oauth" },
  { id: "google", name: "Google Calendar", connect: "oauth" },
  { id: "microsoft", name: "Microsoft Outlook", connect: "oauth" },
  { id: "gmail", name: "Gmail", connect: "oauth" },
  { id: "google_drive", name: "Google Drive", connect: "oauth" },
  { id: "notion", name: "Notion", connect: "oauth" },
  { id: "fireflies", name: "Fireflies", connect: "key" },
];

export function providerName(p: string): string {
  return PROVIDERS.find((x) => x.id === p)?.name ?? p;
}

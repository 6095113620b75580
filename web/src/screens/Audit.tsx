//! The audit log (`/v1/audit`): filters, cursor paging, and CSV/JSON export downloaded with the
//! bearer token (fetched and saved as a Blob, since a plain link would carry no token).
import { useState } from "react";
import { api, fetchWithToken, ok } from "../api/client";
import { Empty, ErrorState, notLoaded, Notice } from "../components/ui";
import { dateTime, label } from "../format";
import { usePoll } from "../hooks";
import { ConnectionFilter, Filter } from "../components/filters";

const OPERATIONS = [
  "pull",
  "push",
  "conflict_detected",
  "conflict_resolved",
  "approval",
  "error",
  "retry",
  "connection_created",
  "sync_requested",
  "token_refreshed",
  "channel_renewed",
  "connection_paused",
  "connection_resumed",
  "settings_changed",
];
const OUTCOMES = ["success", "failure", "rejected"];
const PAGE = 50;

interface Filters {
  connection_id: string;
  record_id: string;
  operation: string;
  outcome: string;
  from: string;
  to: string;
}

const EMPTY: Filters = { connection_id: "", record_id: "", operation: "", outcome: "", from: "", to: "" };

/** `datetime-local` values are local times; the API wants RFC 3339 (sent in UTC). */
function rfc3339(local: string): string | undefined {
  if (!local) return undefined;
  const t = new Date(local);
  return Number.isNaN(t.getTime()) ? local : t.toISOString();
}

function query(f: Filters) {
  return {
    connection_id: f.connection_id || undefined,
    record_id: f.record_id.trim() || undefined,
    operation: f.operation || undefined,
    outcome: f.outcome || undefined,
    from: rfc3339(f.from),
    to: rfc3339(f.to),
  };
}

export function Audit() {
  const [filters, setFilters] = useState<Filters>(EMPTY);
  const [tokens, setTokens] = useState<(string | undefined)[]>([undefined]);
  const [exporting, setExporting] = useState<string | null>(null);
  const [notice, setNotice] = useState<{ kind: "success" | "error"; text: string } | null>(null);
  const token = tokens[tokens.length - 1];

  const page = usePoll(async () => {
    const [connections, entries] = await Promise.all([
      api.GET("/v1/connections").then(ok),
      api.GET("/v1/audit", { params: { query: { ...query(filters), limit: PAGE, page_token: token } } }).then(ok),
    ]);
    return { connections: connections.items, ...entries };
  }, [JSON.stringify(filters), token]);

  const set = (f: Partial<Filters>) => {
    setFilters({ ...filters, ...f });
    setTokens([undefined]);
  };

  const download = async (format: "csv" | "json") => {
    setExporting(format);
    setNotice(null);
    try {
      const params = new URLSearchParams({ format });
      for (const [k, v] of Object.entries(query(filters))) if (v) params.set(k, v);
      const res = await fetchWithToken(`/v1/audit/export?${params.toString()}`);
      const blob = await res.blob();
      const disposition = res.headers.get("Content-Disposition") ?? "";
      const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? `audit.${format}`;
      const href = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = href;
      a.download = name;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 10_000);
      const more = res.headers.get("X-Next-Page-Token");
      setNotice({
        kind: "success",
        text: `Downloaded ${name}.${more ? " More entries match than one export holds: narrow the time range for the rest." : ""}`,
      });
    } catch (e) {
      setNotice({ kind: "error", text: e instanceof Error ? e.message : String(e) });
    } finally {
      setExporting(null);
    }
  };

  const items = page.data?.items ?? [];
  const conns = page.data?.connections ?? [];
  return (
    <section aria-labelledby="audit-title">
      <div className="title-row">
        <h1 id="audit-title">Audit log</h1>
        <div className="actions">
          <button type="button" onClick={() => void download("csv")} disabled={exporting !== null}>
            {exporting === "csv" ? "Exporting…" : "Export CSV"}
          </button>
          <button type="button" onClick={() => void download("json")} disabled={exporting !== null}>
            {exporting === "json" ? "Exporting…" : "Export JSON"}
          </button>
        </div>
      </div>
      <form className="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
        <ConnectionFilter connections={conns} value={filters.connection_id} onChange={(v) => set({ connection_id: v })} />
        <Filter name="Operation" value={filters.operation} onChange={(v) => set({ operation: v })} options={OPERATIONS} />
        <Filter name="Outcome" value={filters.outcome} onChange={(v) => set({ outcome: v })} options={OUTCOMES} />
        <label>
          Record id
          <input type="text" value={filters.record_id} onChange={(e) => set({ record_id: e.target.value })} />
        </label>
        <label>
          From
          <input type="datetime-local" value={filters.from} onChange={(e) => set({ from: e.target.value })} />
        </label>
        <label>
          To
          <input type="datetime-local" value={filters.to} onChange={(e) => set({ to: e.target.value })} />
        </label>
      </form>
      {notice && (
        <Notice kind={notice.kind} onClose={() => setNotice(null)}>
          {notice.text}
        </Notice>
      )}
      {notLoaded(page, "the audit log") ??
        (items.length === 0 ? (
        <Empty>No audit entries{tokens.length > 1 ? " on this page" : " match"}.</Empty>
      ) : (
        <div className="table-wrap" tabIndex={0} role="region" aria-label="Audit entries table">
          {page.error != null && <ErrorState error={page.error} />}
          <table className="audit">
            <caption className="sr-only">Audit entries, newest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Operation</th>
                <th scope="col">Outcome</th>
                <th scope="col">Actor</th>
                <th scope="col">Object</th>
                <th scope="col">Detail</th>
              </tr>
            </thead>
            <tbody>
              {items.map((e) => (
                <tr key={e.entry_id}>
                  <td>{dateTime(e.at)}</td>
                  <td>{label(e.operation)}</td>
                  <td>
                    <span className={`badge ${e.outcome}`}>{label(e.outcome)}</span>
                  </td>
                  <td>{e.actor}</td>
                  <td>{e.object ? `${label(e.object)}${e.record_id ? ` ${e.record_id}` : ""}` : "—"}</td>
                  <td className="detail">
                    <code>{e.detail == null ? "—" : JSON.stringify(e.detail)}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
      <nav className="pager" aria-label="Audit pages">
        <button type="button" disabled={tokens.length <= 1} onClick={() => setTokens(tokens.slice(0, -1))}>
          Newer
        </button>
        <span>Page {tokens.length}</span>
        <button
          type="button"
          disabled={!page.data?.next_page_token}
          onClick={() => page.data?.next_page_token && setTokens([...tokens, page.data.next_page_token])}
        >
          Older
        </button>
      </nav>
    </section>
  );
}

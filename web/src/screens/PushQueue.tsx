//! The approval queue (`/v1/push`): highest priority first across the whole queue, filters, a
//! preview of what each item writes, and approve or reject for many at once.
import { useState } from "react";
import { api, ok, type Connection, type PushItem, type Schemas } from "../api/client";
import { Empty, ErrorState, notLoaded, Notice } from "../components/ui";
import { dateTime, label, relative, value } from "../format";
import { usePoll } from "../hooks";
import { ConnectionFilter, Filter } from "../components/filters";
import { providerName } from "../format";

type Status = Schemas["PushStatus"];
const STATUSES: Status[] = ["pending", "approved", "rejected", "completed", "failed", "expired", "superseded"];
const ACTIONS: Schemas["PushAction"][] = ["create_note", "update_field", "update_record", "create_event", "create_record", "delete_record"];
const PRIORITIES: Schemas["Priority"][] = ["critical", "high", "normal", "low"];
/** At most this many items are loaded (pages of 100, highest priority first). */
const MAX_ITEMS = 500;

type RecordFields = Record<string, unknown>;

export function PushQueue() {
  const [status, setStatus] = useState<Status | "">("pending");
  const [action, setAction] = useState("");
  const [priority, setPriority] = useState("");
  const [connection, setConnection] = useState("");
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [notice, setNotice] = useState<{ kind: "success" | "error"; text: string } | null>(null);
  const [busy, setBusy] = useState(false);

  const queue = usePoll(async () => {
    const connections = ok(await api.GET("/v1/connections")).items;
    const items: PushItem[] = [];
    let page_token: string | undefined;
    do {
      const page = ok(
        await api.GET("/v1/push", {
          params: { query: { status: status || undefined, connection_id: connection || undefined, limit: 100, page_token } },
        }),
      );
      items.push(...page.items);
      page_token = page.next_page_token ?? undefined;
    } while (page_token && items.length < MAX_ITEMS);
    const records = new Map<string, RecordFields>();
    const wanted = [...new Set(items.filter((i) => i.record_id).map((i) => `${i.connection_id}/${i.record_id}`))].slice(0, 50);
    await Promise.all(
      wanted.map(async (key) => {
        const [connection_id, record_id] = key.split("/") as [string, string];
        const res = await api.GET("/v1/connections/{connection_id}/records/{record_id}", { params: { path: { connection_id, record_id } } });
        // What the provider holds as of the last sync: the value an edit would replace.
        if (res.data) records.set(key, res.data.base);
      }),
    );
    return { connections, items, records, truncated: Boolean(page_token) };
  }, [status, connection]);

  const shown = (queue.data?.items ?? []).filter((i) => (!action || i.action === action) && (!priority || i.priority === priority));
  const selectable = shown.filter((i) => i.status === "pending");
  const chosen = selectable.filter((i) => selected.has(i.push_id));
  const allChosen = selectable.length > 0 && chosen.length === selectable.length;

  const toggle = (id: string, on: boolean) => {
    const next = new Set(selected);
    if (on) next.add(id);
    else next.delete(id);
    setSelected(next);
  };

  const decide = async (decision: "approve" | "reject") => {
    setBusy(true);
    setNotice(null);
    try {
      const ids = chosen.map((i) => i.push_id);
      const failed: string[] = [];
      for (let i = 0; i < ids.length; i += 100) {
        const res = ok(await api.POST(decision === "approve" ? "/v1/push/approve" : "/v1/push/reject", { body: { ids: ids.slice(i, i + 100) } }));
        failed.push(...res.items.filter((r) => !r.ok).map((r) => `${r.id}: ${r.error ?? "failed"}`));
      }
      const done = ids.length - failed.length;
      setNotice({
        kind: failed.length ? "error" : "success",
        text: `${decision === "approve" ? "Approved" : "Rejected"} ${done} item${done === 1 ? "" : "s"}.${failed.length ? ` Not done: ${failed.join("; ")}` : ""}`,
      });
      setSelected(new Set());
      await queue.reload();
    } catch (e) {
      setNotice({ kind: "error", text: e instanceof Error ? e.message : String(e) });
    } finally {
      setBusy(false);
    }
  };

  const conns: Connection[] = queue.data?.connections ?? [];
  return (
    <section aria-labelledby="queue-title">
      <h1 id="queue-title">Approval queue</h1>
      <form className="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
        <Filter name="Status" value={status} onChange={(v) => setStatus(v as Status | "")} options={STATUSES} />
        <Filter name="Action" value={action} onChange={setAction} options={ACTIONS} />
        <ConnectionFilter connections={conns} value={connection} onChange={setConnection} />
        <Filter name="Priority" value={priority} onChange={setPriority} options={PRIORITIES} />
      </form>
      {notice && (
        <Notice kind={notice.kind} onClose={() => setNotice(null)}>
          {notice.text}
        </Notice>
      )}
      <div className="toolbar">
        <label className="inline">
          <input
            type="checkbox"
            checked={allChosen}
            disabled={selectable.length === 0}
            onChange={(e) => setSelected(e.target.checked ? new Set(selectable.map((i) => i.push_id)) : new Set())}
          />{" "}
          Select all pending shown ({selectable.length})
        </label>
        <button type="button" className="primary" disabled={busy || chosen.length === 0} onClick={() => void decide("approve")}>
          Approve selected ({chosen.length})
        </button>
        <button type="button" className="danger" disabled={busy || chosen.length === 0} onClick={() => void decide("reject")}>
          Reject selected ({chosen.length})
        </button>
      </div>
      {notLoaded(queue, "the queue") ??
        (shown.length === 0 ? (
        <Empty>Nothing in the queue{status ? ` with status ${label(status).toLowerCase()}` : ""}.</Empty>
      ) : (
        <ul className="items">
          {queue.error != null && <ErrorState error={queue.error} />}
          {shown.map((item) => (
            <li key={item.push_id} className={`item priority-${item.priority}`}>
              <div className="item-head">
                {item.status === "pending" ? (
                  <input
                    type="checkbox"
                    aria-label={`Select ${label(item.action)} ${item.push_id}`}
                    checked={selected.has(item.push_id)}
                    onChange={(e) => toggle(item.push_id, e.target.checked)}
                  />
                ) : null}
                <strong>{label(item.action)}</strong>
                <span className={`badge priority ${item.priority}`}>{label(item.priority)}</span>
                <span className={`badge ${item.status}`}>{label(item.status)}</span>
                <span className="muted">
                  {providerName(conns.find((c) => c.id === item.connection_id)?.provider ?? "")} · {label(item.object)}
                </span>
              </div>
              <Preview item={item} record={item.record_id ? queue.data?.records.get(`${item.connection_id}/${item.record_id}`) : undefined} />
              <p className="muted small">
                Queued {relative(item.created_at)} by {item.created_by} ·{" "}
                {item.status === "pending" ? (
                  <span title={dateTime(item.expires_at)}>expires {relative(item.expires_at)}</span>
                ) : item.decided_at ? (
                  `decided ${relative(item.decided_at)}${item.decided_by ? ` by ${item.decided_by}` : ""}`
                ) : (
                  `expired ${relative(item.expires_at)}`
                )}
                {item.last_error ? ` · ${item.last_error}` : ""}
                {item.result_external_id ? ` · written as ${item.result_external_id}` : ""}
              </p>
            </li>
          ))}
        </ul>
      ))}
      {queue.data?.truncated && <p className="muted">Showing the first {MAX_ITEMS} items; narrow the filters to see others.</p>}
    </section>
  );
}

/** A record as people know it: its name, else its email, else its title. */
function recordName(r: RecordFields): string {
  const name = [r.first_name, r.last_name].filter((x) => typeof x === "string" && x).join(" ") || r.name;
  return value(name || r.email || r.title || r.subject || "(unnamed record)");
}

/** The object types as one record of them is called (`contacts` → contact). */
const SINGULAR: Partial<Record<Schemas["ObjectType"], string>> = {
  contacts: "contact",
  companies: "company",
  deals: "deal",
  notes: "note",
  activities: "activity",
  events: "event",
};

/** Fields an agent's item may not write (people in the CRM own them), when it was pushed. */
function Withheld({ item }: { item: PushItem }) {
  if (!item.withheld_fields?.length) return null;
  return (
    <p className="small" role="note">
      Not written (owned by people in the CRM): {item.withheld_fields.join(", ")}
    </p>
  );
}

/** What the item will write: the note's text, each field's current → new value, the event, the
 *  new record's values, or the record a delete removes. */
function Preview({ item, record }: { item: PushItem; record: RecordFields | undefined }) {
  const f = item.fields;
  const withheld = new Set(item.withheld_fields ?? []);
  if (item.action === "create_record") {
    return (
      <>
        <p className="small">New {SINGULAR[item.object] ?? item.object}{item.source ? ` (source: ${label(item.source)})` : ""}</p>
        <div role="group" aria-label="New record">
          <dl className="preview record">
            {Object.entries(f).map(([k, v]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>
                  {value(v)}
                  {withheld.has(k) ? " (not written)" : ""}
                </dd>
              </div>
            ))}
          </dl>
        </div>
        <Withheld item={item} />
      </>
    );
  }
  if (item.action === "delete_record") {
    return (
      <>
        <div role="group" aria-label="Record to delete">
          <p className="preview delete">
            Deletes the {SINGULAR[item.object] ?? item.object} <strong>{record ? recordName(record) : item.record_id ?? ""}</strong>{" "}
            at the provider.
          </p>
        </div>
        <p className="muted small">
          {item.approved_remote_modified_at
            ? `Only as it was when approved (changed at the provider ${dateTime(item.approved_remote_modified_at)}); a later change stops the delete.`
            : "Only as it is when approved: a later change at the provider stops the delete."}
        </p>
      </>
    );
  }
  if (item.action === "create_note") {
    return (
      <>
        {record && <p className="small">On: {recordName(record)}</p>}
        <blockquote className="preview" aria-label="Note text">
          {value(f.body)}
        </blockquote>
      </>
    );
  }
  if (item.action === "create_event") {
    return (
      <dl className="preview event">
        <dt>Event</dt>
        <dd>{value(f.title)}</dd>
        <dt>When</dt>
        <dd>
          {dateTime(typeof f.start === "string" ? f.start : null)} – {dateTime(typeof f.end === "string" ? f.end : null)}
        </dd>
        {f.attendees !== undefined && (
          <>
            <dt>Attendees</dt>
            <dd>{Array.isArray(f.attendees) ? f.attendees.map(value).join(", ") : value(f.attendees)}</dd>
          </>
        )}
      </dl>
    );
  }
  return (
    <table className="preview">
      <caption className="sr-only">Field changes</caption>
      <thead>
        <tr>
          <th scope="col">Field</th>
          <th scope="col">Current (last synced)</th>
          <th scope="col">New</th>
        </tr>
      </thead>
      <tbody>
        {Object.entries(f).map(([k, v]) => {
          const current = record?.[k];
          return (
            <tr key={k}>
              <th scope="row">{k}</th>
              <td>{record === undefined ? "—" : current === undefined ? "(not set)" : value(current)}</td>
              <td>
                → {value(v)}
                {withheld.has(k) ? " (not written: owned by people in the CRM)" : ""}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

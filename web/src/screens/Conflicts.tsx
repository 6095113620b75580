//! The conflict queue (`/v1/conflicts`): base, local and remote side by side per field, the
//! suggestion and why, and Use local / Use remote / Skip / Suggested, one by one, for a
//! selection, or for every open conflict matching the filter.
import { useState } from "react";
import { api, ok, type Conflict, type Schemas } from "../api/client";
import { Empty, ErrorState, notLoaded, Notice } from "../components/ui";
import { label, relative, value } from "../format";
import { usePoll } from "../hooks";
import { ConnectionFilter, Filter } from "../components/filters";
import { providerName } from "../format";

type Strategy = Schemas["ResolveStrategy"];
const CHOICES: { id: Strategy; text: string }[] = [
  { id: "use_local", text: "Use local" },
  { id: "use_remote", text: "Use remote" },
  { id: "skip", text: "Skip" },
  { id: "suggested", text: "Suggested" },
];
const WHY: Record<Schemas["Strategy"], string> = {
  field_ownership: "the field's owner decides",
  source_hierarchy: "the stronger source wins",
  crm_wins_structured: "the CRM's value wins for structured fields",
  merge_notes: "the two notes are merged",
  last_write_wins: "the newer change wins",
  manual: "the policy leaves it to a person; the newer change",
};

export function Conflicts() {
  const [status, setStatus] = useState<Schemas["ConflictStatus"]>("open");
  const [connection, setConnection] = useState("");
  const [field, setField] = useState("");
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [notice, setNotice] = useState<{ kind: "success" | "error"; text: string } | null>(null);
  const [busy, setBusy] = useState(false);

  const list = usePoll(async () => {
    const [connections, page] = await Promise.all([
      api.GET("/v1/connections").then(ok),
      api
        .GET("/v1/conflicts", {
          params: { query: { status, connection_id: connection || undefined, field: field.trim() || undefined, limit: 100 } },
        })
        .then(ok),
    ]);
    return { connections: connections.items, items: page.items, more: Boolean(page.next_page_token) };
  }, [status, connection, field]);

  const items = list.data?.items ?? [];
  const open = items.filter((c) => c.status === "open");
  const chosen = open.filter((c) => selected.has(c.conflict_id));

  const resolve = async (strategy: Strategy, target: { ids: string[] } | { matching: Schemas["Matching"] }) => {
    setBusy(true);
    setNotice(null);
    try {
      const res = ok(await api.POST("/v1/conflicts/resolve", { body: { ...target, resolution: strategy } }));
      const failed = res.items.filter((r) => !r.ok);
      const done = res.items.length - failed.length;
      setNotice({
        kind: failed.length ? "error" : "success",
        text: `Resolved ${done} conflict${done === 1 ? "" : "s"} (${label(strategy).toLowerCase()}).${
          failed.length ? ` Not resolved: ${failed.map((f) => `${f.id}: ${f.error ?? "failed"}`).join("; ")}` : ""
        }`,
      });
      setSelected(new Set());
      await list.reload();
    } catch (e) {
      setNotice({ kind: "error", text: e instanceof Error ? e.message : String(e) });
    } finally {
      setBusy(false);
    }
  };

  const matching: Schemas["Matching"] = { connection_id: connection || null, field: field.trim() || null };
  const filtered = Boolean(matching.connection_id || matching.field);

  return (
    <section aria-labelledby="conflicts-title">
      <h1 id="conflicts-title">Conflicts</h1>
      <form className="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
        <Filter
          name="Status"
          value={status}
          onChange={(v) => setStatus(v as Schemas["ConflictStatus"])}
          options={["open", "resolved"]}
          any={false}
        />
        <ConnectionFilter connections={list.data?.connections ?? []} value={connection} onChange={setConnection} />
        <label>
          Field
          <input type="text" value={field} onChange={(e) => setField(e.target.value)} placeholder="e.g. phone" />
        </label>
      </form>
      {notice && (
        <Notice kind={notice.kind} onClose={() => setNotice(null)}>
          {notice.text}
        </Notice>
      )}
      {status === "open" && (
        <div className="toolbar" role="group" aria-label="Resolve selected">
          <label className="inline">
            <input
              type="checkbox"
              checked={open.length > 0 && chosen.length === open.length}
              disabled={open.length === 0}
              onChange={(e) => setSelected(e.target.checked ? new Set(open.map((c) => c.conflict_id)) : new Set())}
            />{" "}
            Select all shown ({open.length})
          </label>
          {CHOICES.map((c) => (
            <button
              key={c.id}
              type="button"
              disabled={busy || chosen.length === 0}
              onClick={() => void resolve(c.id, { ids: chosen.map((x) => x.conflict_id) })}
            >
              {c.text} for selected ({chosen.length})
            </button>
          ))}
        </div>
      )}
      {status === "open" && filtered && open.length > 0 && (
        <div className="toolbar" role="group" aria-label="Resolve all matching the filter">
          <span>All open conflicts matching the filter:</span>
          {CHOICES.map((c) => (
            <button key={c.id} type="button" disabled={busy} onClick={() => void resolve(c.id, { matching })}>
              {c.text} for all matching
            </button>
          ))}
        </div>
      )}
      {notLoaded(list, "conflicts") ??
        (items.length === 0 ? (
        <Empty>No {status} conflicts.</Empty>
      ) : (
        <ul className="items">
          {list.error != null && <ErrorState error={list.error} />}
          {items.map((c) => (
            <ConflictItem
              key={c.conflict_id}
              conflict={c}
              provider={list.data?.connections.find((x) => x.id === c.connection_id)?.provider ?? ""}
              selected={selected.has(c.conflict_id)}
              onSelect={(on) => {
                const next = new Set(selected);
                if (on) next.add(c.conflict_id);
                else next.delete(c.conflict_id);
                setSelected(next);
              }}
              busy={busy}
              onResolve={(s) => void resolve(s, { ids: [c.conflict_id] })}
            />
          ))}
        </ul>
      ))}
      {list.data?.more && <p className="muted">Showing the first 100; resolve these or narrow the filter to see more.</p>}
    </section>
  );
}

function ConflictItem({
  conflict: c,
  provider,
  selected,
  onSelect,
  busy,
  onResolve,
}: {
  conflict: Conflict;
  provider: string;
  selected: boolean;
  onSelect: (on: boolean) => void;
  busy: boolean;
  onResolve: (s: Strategy) => void;
}) {
  const name = `${label(c.object)} ${c.external_id}: ${c.field}`;
  return (
    <li className="item conflict" aria-label={`Conflict ${name}`}>
      <div className="item-head">
        {c.status === "open" && (
          <input type="checkbox" aria-label={`Select conflict ${name}`} checked={selected} onChange={(e) => onSelect(e.target.checked)} />
        )}
        <strong>{c.field}</strong>
        <span className="muted">
          {providerName(provider)} · {label(c.object)} {c.external_id} · detected {relative(c.detected_at)}
        </span>
      </div>
      <dl className="sides">
        <div>
          <dt>Base (last agreed)</dt>
          <dd>{value(c.base)}</dd>
        </div>
        <div className={c.suggested === "use_local" ? "suggested" : ""}>
          <dt>Local (ours)</dt>
          <dd>{value(c.local)}</dd>
        </div>
        <div className={c.suggested === "use_remote" ? "suggested" : ""}>
          <dt>Remote ({providerName(provider) || "provider"})</dt>
          <dd>{value(c.remote)}</dd>
        </div>
      </dl>
      <p className="small">
        Suggestion: <strong>{label(c.suggested)}</strong> — {WHY[c.suggested_by] ?? label(c.suggested_by)}.
      </p>
      {c.status === "open" ? (
        <div className="actions">
          {CHOICES.map((x) => (
            <button key={x.id} type="button" disabled={busy} onClick={() => onResolve(x.id)} aria-label={`${x.text}: ${name}`}>
              {x.text}
            </button>
          ))}
        </div>
      ) : (
        <p className="small">
          Resolved: <strong>{label(c.resolution ?? "unknown")}</strong>
          {c.resolved_by ? ` by ${c.resolved_by}` : ""} {relative(c.resolved_at)}
        </p>
      )}
    </li>
  );
}

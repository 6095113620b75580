//! Tasks: the open research tasks (a meeting with outside attendees on a connected calendar, due a
//! day before it) and follow-up tasks (a Fireflies transcript's action items, due a day after the
//! meeting) of every connection, soonest due first, with the meeting, the outside attendees, the
//! action items and the CRM contacts they link to.
import { useState } from "react";
import { api, ok, type Connection, type Schemas } from "../api/client";
import { Empty, notLoaded } from "../components/ui";
import { Filter } from "../components/filters";
import { dateTime, providerName, relative, value } from "../format";
import { usePoll } from "../hooks";
import { Link } from "../router";

type Record = Schemas["RecordView"];
const KINDS = ["research", "follow_up"] as const;
/** Tasks read per connection, at most (two pages). */
const PAGE = 200;

interface Task {
  record: Record;
  connection: Connection;
}

const kindOf = (r: Record) => (r.fields.kind === "follow_up" ? "follow_up" : "research");
const text = (v: unknown) => (typeof v === "string" ? v : "");
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export function Tasks() {
  const [kind, setKind] = useState("");
  const tasks = usePoll(async () => {
    const { items } = ok(await api.GET("/v1/connections"));
    const holding = items.filter((c) => (c.record_counts.research_tasks ?? 0) > 0);
    const pages = await Promise.all(
      holding.map(async (connection) => {
        const page = ok(
          await api.GET("/v1/connections/{connection_id}/records", {
            params: { path: { connection_id: connection.id }, query: { object: "research_tasks", limit: PAGE } },
          }),
        );
        return {
          truncated: page.next_page_token != null,
          tasks: page.items.filter((r) => !r.deleted).map((record) => ({ record, connection })),
        };
      }),
    );
    const all: Task[] = pages.flatMap((p) => p.tasks);
    all.sort((a, b) => text(a.record.fields.due_at).localeCompare(text(b.record.fields.due_at)));
    return { tasks: all, truncated: pages.some((p) => p.truncated) };
  }, []);

  const shown = (tasks.data?.tasks ?? []).filter((t) => !kind || kindOf(t.record) === kind);
  return (
    <section aria-labelledby="tasks-title">
      <h1 id="tasks-title">Tasks</h1>
      <form className="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
        <Filter name="Kind" value={kind} onChange={setKind} options={KINDS} />
      </form>
      {notLoaded(tasks, "the tasks") ??
        (shown.length === 0 ? (
          <Empty>
            No open tasks{kind ? " of this kind" : ""}. A meeting with outside attendees on a connected calendar
            becomes a research task; a Fireflies transcript with action items becomes a follow-up task.
          </Empty>
        ) : (
          <ul className="items">
            {shown.map((t) => (
              <TaskItem key={`${t.connection.id}/${t.record.record_id}`} task={t} />
            ))}
          </ul>
        ))}
      {tasks.data?.truncated && (
        <p className="muted">Showing the first {PAGE} tasks of each connection.</p>
      )}
    </section>
  );
}

function TaskItem({ task }: { task: Task }) {
  const f = task.record.fields;
  const due = text(f.due_at);
  const outside = list(f.external_attendees).map(value);
  const actions = list(f.action_items);
  const contacts = list(f.linked_contacts).length;
  return (
    <li className="item">
      <div className="item-head">
        <strong>{value(f.title)}</strong>
        <span className="badge">{kindOf(task.record) === "follow_up" ? "Follow-up" : "Research"}</span>
        <span className="muted">
          from <Link href={`/connections/${task.connection.id}`}>{providerName(task.connection.provider)}</Link>
        </span>
      </div>
      <p>
        {due ? (
          <span title={dateTime(due)}>Due {relative(due)}</span>
        ) : (
          "No due date"
        )}
        {f.meeting_start ? ` · meeting ${dateTime(text(f.meeting_start))}` : ""}
        {f.meeting_record_id ? " · linked to its calendar event" : ""}
      </p>
      {actions.length > 0 && (
        <ul aria-label="Action items">
          {actions.map((a, i) => {
            const item = a as { text?: unknown; assignee?: unknown };
            return (
              <li key={i}>
                {value(item.text)}
                {item.assignee ? <span className="muted"> ({value(item.assignee)})</span> : null}
              </li>
            );
          })}
        </ul>
      )}
      <p className="muted small">
        {outside.length > 0 ? `Outside attendees: ${outside.join(", ")}` : "No outside attendees"}
        {contacts > 0 ? ` · ${contacts} CRM contact${contacts === 1 ? "" : "s"} linked` : ""}
      </p>
    </li>
  );
}

//! A connection's settings form. Saving sends a JSON merge patch of what changed; the API's
//! problem body (its `detail` names the field) is shown as the validation message.
import { useEffect, useId, useState } from "react";
import { api, ok, type Settings, type SettingsPatch, type Schemas } from "../api/client";
import { ErrorState, Loading, Notice } from "../components/ui";
import { label } from "../format";

type Policy = Schemas["ConflictPolicy"];
type Preset = Schemas["PolicyPreset"] | "custom";
const ACTIONS = ["create_note", "update_field", "create_event", "update_record"] as const;
const OBJECTS: Schemas["ObjectType"][] = ["contacts", "companies", "deals", "notes", "activities", "events", "research_tasks", "messages", "files"];
const PRESETS: Record<Exclude<Preset, "custom">, Pick<Policy, "source_hierarchy" | "crm_wins_structured" | "merge_notes" | "fallback">> = {
  default: { source_hierarchy: true, crm_wins_structured: true, merge_notes: true, fallback: "manual" },
  manual: { source_hierarchy: false, crm_wins_structured: false, merge_notes: false, fallback: "manual" },
  last_write_wins: { source_hierarchy: false, crm_wins_structured: false, merge_notes: false, fallback: "last_write_wins" },
};

function presetOf(p: Policy): Preset {
  for (const [name, v] of Object.entries(PRESETS)) {
    if (
      (p.source_hierarchy ?? true) === v.source_hierarchy &&
      (p.crm_wins_structured ?? true) === v.crm_wins_structured &&
      (p.merge_notes ?? true) === v.merge_notes &&
      (p.fallback ?? "manual") === v.fallback
    )
      return name as Preset;
  }
  return "custom";
}

interface Pair {
  a: string;
  b: string;
  c?: string;
}

interface Form {
  interval: string;
  autoPush: Record<string, boolean>;
  preset: Preset;
  ownership: Pair[];
  fieldMapping: Pair[];
  stageMapping: Pair[];
  domains: string;
  prefix: string;
  windowDays: string;
}

function toForm(s: Settings): Form {
  return {
    interval: String(s.interval_minutes),
    autoPush: { ...s.auto_push },
    preset: presetOf(s.conflict_policy),
    ownership: Object.entries(s.conflict_policy.ownership ?? {}).map(([a, b]) => ({ a, b })),
    fieldMapping: Object.entries(s.field_mapping).flatMap(([object, m]) =>
      Object.entries(m ?? {}).map(([field, prop]) => ({ a: object, b: field, c: prop })),
    ),
    stageMapping: Object.entries(s.stage_mapping).map(([a, b]) => ({ a, b })),
    domains: s.own_domains.join("\n"),
    prefix: s.note_prefix,
    windowDays: String(s.calendar_window_days),
  };
}

/** A merge patch turning map `before` into `after` (removed keys become null). */
function mapPatch(before: Record<string, unknown>, after: Record<string, unknown>): Record<string, unknown> | null {
  const patch: Record<string, unknown> = {};
  for (const k of Object.keys(before)) if (!(k in after)) patch[k] = null;
  for (const [k, v] of Object.entries(after)) if (JSON.stringify(before[k]) !== JSON.stringify(v)) patch[k] = v;
  return Object.keys(patch).length ? patch : null;
}

function num(text: string): number | string {
  const n = Number(text);
  return text.trim() !== "" && Number.isFinite(n) ? n : text;
}

export function buildPatch(s: Settings, f: Form): SettingsPatch {
  const patch: Record<string, unknown> = {};
  if (f.interval !== String(s.interval_minutes)) patch.interval_minutes = num(f.interval);
  if (f.windowDays !== String(s.calendar_window_days)) patch.calendar_window_days = num(f.windowDays);
  const auto = mapPatch(s.auto_push, f.autoPush);
  if (auto) patch.auto_push = auto;
  const policy: Record<string, unknown> = {};
  if (f.preset !== "custom" && f.preset !== presetOf(s.conflict_policy)) Object.assign(policy, PRESETS[f.preset]);
  const owners = mapPatch(
    s.conflict_policy.ownership ?? {},
    Object.fromEntries(f.ownership.filter((p) => p.a.trim()).map((p) => [p.a.trim(), p.b])),
  );
  if (owners) policy.ownership = owners;
  if (Object.keys(policy).length) patch.conflict_policy = policy;
  const fm: Record<string, Record<string, string>> = {};
  for (const p of f.fieldMapping) if (p.b.trim()) (fm[p.a] ??= {})[p.b.trim()] = p.c ?? "";
  const fmPatch: Record<string, unknown> = {};
  for (const object of new Set([...Object.keys(s.field_mapping), ...Object.keys(fm)])) {
    const before = (s.field_mapping as Record<string, Record<string, string>>)[object] ?? {};
    const d = mapPatch(before, fm[object] ?? {});
    if (d) fmPatch[object] = d;
  }
  if (Object.keys(fmPatch).length) patch.field_mapping = fmPatch;
  const stages = mapPatch(
    s.stage_mapping,
    Object.fromEntries(f.stageMapping.filter((p) => p.a.trim()).map((p) => [p.a.trim(), p.b.trim()])),
  );
  if (stages) patch.stage_mapping = stages;
  const domains = f.domains
    .split(/[\s,]+/)
    .map((d) => d.trim())
    .filter(Boolean);
  if (JSON.stringify(domains) !== JSON.stringify(s.own_domains)) patch.own_domains = domains;
  if (f.prefix !== s.note_prefix) patch.note_prefix = f.prefix;
  return patch as SettingsPatch;
}

export function SettingsForm({ id }: { id: string }) {
  const [settings, setSettings] = useState<Settings | null>(null);
  const [form, setForm] = useState<Form | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [saveError, setSaveError] = useState<unknown>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const uid = useId();

  useEffect(() => {
    let live = true;
    api
      .GET("/v1/connections/{connection_id}/settings", { params: { path: { connection_id: id } } })
      .then(ok)
      .then((s) => {
        if (!live) return;
        setSettings(s);
        setForm(toForm(s));
      })
      .catch((e: unknown) => live && setLoadError(e));
    return () => {
      live = false;
    };
  }, [id]);

  if (loadError) return <ErrorState error={loadError} />;
  if (!settings || !form) return <Loading what="settings" />;
  const set = (f: Partial<Form>) => {
    setForm({ ...form, ...f });
    setSaved(null);
  };

  const save = async () => {
    setSaving(true);
    setSaveError(null);
    setSaved(null);
    const patch = buildPatch(settings, form);
    if (Object.keys(patch).length === 0) {
      setSaved("Nothing changed.");
      setSaving(false);
      return;
    }
    try {
      const s = ok(
        await api.PATCH("/v1/connections/{connection_id}/settings", {
          params: { path: { connection_id: id } },
          body: patch,
          headers: { "Content-Type": "application/merge-patch+json" },
        }),
      );
      setSettings(s);
      setForm(toForm(s));
      setSaved(`Saved (version ${s.settings_version}).`);
    } catch (e) {
      setSaveError(e);
    } finally {
      setSaving(false);
    }
  };

  const rows = (key: "ownership" | "fieldMapping" | "stageMapping", i: number, p: Partial<Pair>) =>
    set({ [key]: form[key].map((r, j) => (j === i ? { ...r, ...p } : r)) });
  const remove = (key: "ownership" | "fieldMapping" | "stageMapping", i: number) =>
    set({ [key]: form[key].filter((_, j) => j !== i) });

  return (
    <form
      className="settings"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        void save();
      }}
    >
      <div className="grid">
        <label>
          Sync interval (minutes)
          <input type="number" inputMode="numeric" value={form.interval} onChange={(e) => set({ interval: e.target.value })} />
        </label>
        <label>
          Calendar window (days)
          <input type="number" inputMode="numeric" value={form.windowDays} onChange={(e) => set({ windowDays: e.target.value })} />
        </label>
        <label>
          Note prefix
          <input type="text" value={form.prefix} onChange={(e) => set({ prefix: e.target.value })} />
        </label>
        <label>
          Conflict policy preset
          <select value={form.preset} onChange={(e) => set({ preset: e.target.value as Preset })}>
            <option value="default">Default (ownership, sources, CRM wins structured fields, merge notes, then a person)</option>
            <option value="manual">Manual (a person decides every conflict)</option>
            <option value="last_write_wins">Last write wins</option>
            {form.preset === "custom" && <option value="custom">Custom</option>}
          </select>
        </label>
      </div>

      <fieldset>
        <legend>Push without approval</legend>
        {ACTIONS.map((a) => (
          <label key={a} className="inline">
            <input
              type="checkbox"
              checked={form.autoPush[a] ?? false}
              onChange={(e) => set({ autoPush: { ...form.autoPush, [a]: e.target.checked } })}
            />{" "}
            {label(a)}
          </label>
        ))}
      </fieldset>

      <fieldset>
        <legend>Field ownership</legend>
        {form.ownership.map((p, i) => (
          <div className="row" key={i}>
            <label>
              Field
              <input type="text" value={p.a} onChange={(e) => rows("ownership", i, { a: e.target.value })} />
            </label>
            <label>
              Owner
              <select value={p.b} onChange={(e) => rows("ownership", i, { b: e.target.value })}>
                <option value="agent">Agent (ours wins)</option>
                <option value="human">Human (theirs wins)</option>
                <option value="shared">Shared</option>
              </select>
            </label>
            <button type="button" className="link" onClick={() => remove("ownership", i)} aria-label={`Remove ownership of ${p.a || "new field"}`}>
              Remove
            </button>
          </div>
        ))}
        <button type="button" onClick={() => set({ ownership: [...form.ownership, { a: "", b: "agent" }] })}>
          Add field owner
        </button>
      </fieldset>

      <fieldset>
        <legend>Field mapping</legend>
        {form.fieldMapping.map((p, i) => (
          <div className="row" key={i}>
            <label>
              Object
              <select value={p.a} onChange={(e) => rows("fieldMapping", i, { a: e.target.value })}>
                {OBJECTS.map((o) => (
                  <option key={o} value={o}>
                    {label(o)}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Field
              <input type="text" value={p.b} onChange={(e) => rows("fieldMapping", i, { b: e.target.value })} />
            </label>
            <label>
              Provider property
              <input type="text" value={p.c ?? ""} onChange={(e) => rows("fieldMapping", i, { c: e.target.value })} />
            </label>
            <button type="button" className="link" onClick={() => remove("fieldMapping", i)} aria-label={`Remove mapping of ${p.b || "new field"}`}>
              Remove
            </button>
          </div>
        ))}
        <button type="button" onClick={() => set({ fieldMapping: [...form.fieldMapping, { a: "contacts", b: "", c: "" }] })}>
          Add field mapping
        </button>
      </fieldset>

      <fieldset>
        <legend>Stage mapping</legend>
        {form.stageMapping.map((p, i) => (
          <div className="row" key={i}>
            <label>
              Provider stage
              <input type="text" value={p.a} onChange={(e) => rows("stageMapping", i, { a: e.target.value })} />
            </label>
            <label>
              Our stage
              <input type="text" value={p.b} onChange={(e) => rows("stageMapping", i, { b: e.target.value })} />
            </label>
            <button type="button" className="link" onClick={() => remove("stageMapping", i)} aria-label={`Remove stage ${p.a || "new stage"}`}>
              Remove
            </button>
          </div>
        ))}
        <button type="button" onClick={() => set({ stageMapping: [...form.stageMapping, { a: "", b: "" }] })}>
          Add stage mapping
        </button>
      </fieldset>

      <label className="block">
        Own domains (one a line; meetings with anyone else get a research task)
        <textarea id={`${uid}-domains`} rows={3} value={form.domains} onChange={(e) => set({ domains: e.target.value })} />
      </label>

      {saveError != null && <ErrorState error={saveError} />}
      {saved && <Notice kind="success">{saved}</Notice>}
      <div className="actions">
        <button type="submit" className="primary" disabled={saving}>
          {saving ? "Saving…" : "Save settings"}
        </button>
        <button type="button" onClick={() => set(toForm(settings))} disabled={saving}>
          Undo changes
        </button>
      </div>
    </form>
  );
}

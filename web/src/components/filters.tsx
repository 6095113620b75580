//! The filter controls the queues and the audit log share: a select of codes with "Any", and a
//! select of the tenant's connections.
import type { Connection } from "../api/client";
import { label, providerName } from "../format";

export function Filter({
  name,
  value,
  onChange,
  options,
  any = true,
}: {
  name: string;
  value: string;
  onChange: (value: string) => void;
  options: readonly string[];
  any?: boolean;
}) {
  return (
    <label>
      {name}
      <select value={value} onChange={(e) => onChange(e.target.value)}>
        {any && <option value="">Any</option>}
        {options.map((o) => (
          <option key={o} value={o}>
            {label(o)}
          </option>
        ))}
      </select>
    </label>
  );
}

export function ConnectionFilter({
  connections,
  value,
  onChange,
}: {
  connections: Connection[];
  value: string;
  onChange: (value: string) => void;
}) {
  return (
    <label>
      Connection
      <select value={value} onChange={(e) => onChange(e.target.value)}>
        <option value="">Any</option>
        {connections.map((c) => (
          <option key={c.id} value={c.id}>
            {providerName(c.provider)} {c.account_id ?? c.id}
          </option>
        ))}
      </select>
    </label>
  );
}

//! A small SVG chart of the newest runs: bars for records pulled, a line for the duration.
import type { Run } from "../api/client";
import { duration } from "../format";

export function RunChart({ runs }: { runs: Run[] }) {
  const data = [...runs].reverse().slice(-30);
  if (data.length === 0) return null;
  const w = 600;
  const h = 180;
  const pad = { l: 40, r: 50, t: 10, b: 24 };
  const iw = w - pad.l - pad.r;
  const ih = h - pad.t - pad.b;
  const maxRecords = Math.max(1, ...data.map((r) => r.counts.pulled ?? 0));
  const maxMs = Math.max(1, ...data.map((r) => r.duration_ms));
  const step = iw / data.length;
  const bar = Math.max(2, step * 0.6);
  const x = (i: number) => pad.l + i * step + step / 2;
  const yRec = (n: number) => pad.t + ih - (n / maxRecords) * ih;
  const yMs = (ms: number) => pad.t + ih - (ms / maxMs) * ih;
  const line = data.map((r, i) => `${i === 0 ? "M" : "L"}${x(i).toFixed(1)},${yMs(r.duration_ms).toFixed(1)}`).join(" ");
  const total = data.reduce((n, r) => n + (r.counts.pulled ?? 0), 0);
  return (
    <figure className="chart">
      <svg
        viewBox={`0 0 ${w} ${h}`}
        role="img"
        aria-label={`Records pulled (bars) and duration (line) of the last ${data.length} runs: ${total} records in all, longest ${duration(maxMs)}.`}
      >
        <line x1={pad.l} y1={pad.t + ih} x2={pad.l + iw} y2={pad.t + ih} className="axis" />
        <text x={pad.l - 6} y={pad.t + 8} className="tick" textAnchor="end">
          {maxRecords}
        </text>
        <text x={pad.l - 6} y={pad.t + ih} className="tick" textAnchor="end">
          0
        </text>
        <text x={pad.l + iw + 6} y={pad.t + 8} className="tick">
          {duration(maxMs)}
        </text>
        {data.map((r, i) => (
          <rect
            key={r.run_id}
            className={`bar ${r.status}`}
            x={x(i) - bar / 2}
            y={yRec(r.counts.pulled ?? 0)}
            width={bar}
            height={pad.t + ih - yRec(r.counts.pulled ?? 0)}
          >
            <title>{`${new Date(r.started_at).toLocaleString()}: ${r.counts.pulled ?? 0} records, ${duration(r.duration_ms)}, ${r.status}`}</title>
          </rect>
        ))}
        <path d={line} className="duration" fill="none" />
      </svg>
      <figcaption>
        <span className="key bar-key" aria-hidden="true" /> Records pulled <span className="key line-key" aria-hidden="true" /> Duration
      </figcaption>
    </figure>
  );
}

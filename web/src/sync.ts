//! Following a "sync now" job to its end: the job's run and any continuation runs after it
//! (runs are listed newest first), or the connection's error when the job failed without a run.
import { api, ok, type Run } from "./api/client";

export interface SyncOutcome {
  runs: Run[];
  status: Run["status"] | "error";
  error: string | null;
  pulled: number;
  created: number;
  updated: number;
  deleted: number;
  unchanged: number;
}

/** The finished runs of `jobId` (oldest first), or null while it has not finished. */
export function runsOfJob(newestFirst: Run[], jobId: string): Run[] | null {
  const pos = newestFirst.findIndex((r) => r.job_id === jobId);
  if (pos < 0) return null;
  const mine = newestFirst.slice(0, pos + 1).reverse();
  const last = mine[mine.length - 1];
  return last && last.status !== "continued" ? mine : null;
}

export function outcome(runs: Run[]): SyncOutcome {
  const sum = (k: "pulled" | "created" | "updated" | "deleted" | "unchanged") =>
    runs.reduce((n, r) => n + (r.counts[k] ?? 0), 0);
  const last = runs[runs.length - 1];
  return {
    runs,
    status: last?.status ?? "failed",
    error: last?.error ?? null,
    pulled: sum("pulled"),
    created: sum("created"),
    updated: sum("updated"),
    deleted: sum("deleted"),
    unchanged: sum("unchanged"),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until the job's runs finish, the connection gives up on it, or `cancelled()` says stop. */
export async function waitForJob(connectionId: string, jobId: string, cancelled: () => boolean): Promise<SyncOutcome | null> {
  const path = { connection_id: connectionId };
  while (!cancelled()) {
    await sleep(1000);
    if (cancelled()) return null;
    const runs = ok(await api.GET("/v1/connections/{connection_id}/runs", { params: { path, query: { limit: 50 } } }));
    const mine = runsOfJob(runs.items, jobId);
    if (mine) return outcome(mine);
    const errors = ok(await api.GET("/v1/connections/{connection_id}/errors", { params: { path, query: { limit: 20 } } }));
    const failed = errors.items.find((e) => e.job_id === jobId);
    if (failed && errors.status === "error") {
      return { ...outcome([]), status: "error", error: errors.current_error ?? failed.error ?? "the sync failed" };
    }
  }
  return null;
}

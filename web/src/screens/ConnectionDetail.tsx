//! One connection: per-object status, run history (table and chart), errors with their retry
//! state and a Retry button, and its settings.
import { useState } from "react";
import { api, ok } from "../api/client";
import { ErrorState, HealthLight, HealthReasons, Loading, Empty, Notice } from "../components/ui";
import { RunChart } from "../components/RunChart";
import { dateTime, duration, label, providerName, relative } from "../format";
import { usePoll } from "../hooks";
import { Link } from "../router";
import { SettingsForm } from "./Settings";

export function ConnectionDetail({ id }: { id: string }) {
  const path = { connection_id: id };
  const data = usePoll(async () => {
    const [connection, status, health, runs, errors] = await Promise.all([
      api.GET("/v1/connections/{connection_id}", { params: { path } }).then(ok),
      api.GET("/v1/connections/{connection_id}/status", { params: { path } }).then(ok),
      api.GET("/v1/connections/{connection_id}/health", { params: { path } }).then(ok),
      api.GET("/v1/connections/{connection_id}/runs", { params: { path, query: { limit: 50 } } }).then(ok),
      api.GET("/v1/connections/{connection_id}/errors", { params: { path, query: { limit: 20 } } }).then(ok),
    ]);
    return { connection, status, health, runs: runs.items, errors };
  }, [id]);
  const [retryNote, setRetryNote] = useState<{ kind: "success" | "error"; text: string } | null>(null);

  if (data.loading && !data.data) return <Loading what="the connection" />;
  if (!data.data)
    return (
      <section>
        <h1>Connection</h1>
        <ErrorState error={data.error} retry={() => void data.reload()} />
        <p>
          <Link href="/connections">Back to the connections</Link>
        </p>
      </section>
    );
  const { connection: c, status, health, runs, errors } = data.data;

  const retry = async () => {
    setRetryNote(null);
    try {
      const { job_id } = ok(await api.POST("/v1/connections/{connection_id}/retry", { params: { path } }));
      setRetryNote({ kind: "success", text: `Retry queued (job ${job_id}).` });
      await data.reload();
    } catch (e) {
      setRetryNote({ kind: "error", text: e instanceof Error ? e.message : String(e) });
    }
  };

  return (
    <section aria-labelledby="detail-title">
      <p className="crumbs">
        <Link href="/connections">Connections</Link> › {providerName(c.provider)}
      </p>
      <div className="title-row">
        <h1 id="detail-title">
          {providerName(c.provider)} <span className="muted small">{c.account_id ?? c.base_url}</span>
        </h1>
        <HealthLight status={health.status} />
      </div>
      {data.error != null && <ErrorState error={data.error} />}
      <p className="times">
        Last sync: {relative(c.last_sync_at)} • Next: {c.paused ? "paused" : relative(c.next_sync_at)}
        {status.syncing_since ? ` • Syncing since ${relative(status.syncing_since)}` : ""}
      </p>
      <HealthReasons reasons={health.reasons} />

      <h2>Objects</h2>
      <div className="table-wrap" tabIndex={0} role="region" aria-label="Objects table">
        <table>
          <thead>
            <tr>
              <th scope="col">Object</th>
              <th scope="col">State</th>
              <th scope="col">Records</th>
              <th scope="col">Last synced</th>
              <th scope="col">Error</th>
            </tr>
          </thead>
          <tbody>
            {status.objects.map((o) => (
              <tr key={o.object}>
                <th scope="row">{label(o.object)}</th>
                <td>
                  <span className={`badge ${o.state}`}>{label(o.state)}</span>
                </td>
                <td className="num">{o.records}</td>
                <td>{relative(o.last_synced_at)}</td>
                <td>
                  {o.error
                    ? `${o.error.code ?? o.error.class}: ${o.error.message}${o.error.retry_at ? ` (next try ${relative(o.error.retry_at)})` : ""}`
                    : "—"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>

      <h2>Runs</h2>
      {runs.length === 0 ? (
        <Empty>No runs yet.</Empty>
      ) : (
        <>
          <RunChart runs={runs} />
          <div className="table-wrap" tabIndex={0} role="region" aria-label="Runs table">
            <table>
              <caption className="sr-only">Run history, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Started</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Status</th>
                  <th scope="col">Pulled</th>
                  <th scope="col">Created</th>
                  <th scope="col">Updated</th>
                  <th scope="col">Deleted</th>
                  <th scope="col">Duration</th>
                  <th scope="col">Error</th>
                </tr>
              </thead>
              <tbody>
                {runs.map((r) => (
                  <tr key={r.run_id}>
                    <td>{dateTime(r.started_at)}</td>
                    <td>{label(r.reason)}</td>
                    <td>
                      <span className={`badge ${r.status}`}>{label(r.status)}</span>
                    </td>
                    <td className="num">{r.counts.pulled ?? 0}</td>
                    <td className="num">{r.counts.created ?? 0}</td>
                    <td className="num">{r.counts.updated ?? 0}</td>
                    <td className="num">{r.counts.deleted ?? 0}</td>
                    <td className="num">{duration(r.duration_ms)}</td>
                    <td>{r.error ?? "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}

      <h2>Errors</h2>
      <p>
        Retry state: <strong>{label(errors.retry.state)}</strong>
        {errors.retry.attempts > 0 &&
          ` — attempt ${errors.retry.attempts}${errors.retry.max_attempts ? ` of ${errors.retry.max_attempts}` : ""}`}
        {errors.retry.next_attempt_at ? `, next ${relative(errors.retry.next_attempt_at)}` : ""}
        {errors.current_error ? `. ${errors.current_error}` : ""}
      </p>
      {errors.retry_action && (
        <button type="button" className="primary" onClick={() => void retry()}>
          Retry
        </button>
      )}
      {retryNote && (
        <Notice kind={retryNote.kind} onClose={() => setRetryNote(null)}>
          {retryNote.text}
        </Notice>
      )}
      {errors.items.length === 0 ? (
        <Empty>No failed attempts.</Empty>
      ) : (
        <div className="table-wrap" tabIndex={0} role="region" aria-label="Errors table">
          <table>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Kind</th>
                <th scope="col">Error</th>
                <th scope="col">Attempt</th>
                <th scope="col">Retry</th>
              </tr>
            </thead>
            <tbody>
              {errors.items.map((e) => (
                <tr key={e.entry_id}>
                  <td>{dateTime(e.at)}</td>
                  <td>{e.operation === "retry" ? "Retryable" : "Permanent"}</td>
                  <td>{e.error ?? "—"}</td>
                  <td className="num">{e.attempt ?? "—"}</td>
                  <td>{e.next_attempt_at ? `next ${relative(e.next_attempt_at)}` : e.retryable ? "will retry" : "no"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      <h2>Settings</h2>
      <SettingsForm id={id} />
    </section>
  );
}

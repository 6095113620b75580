//! Connections: a card per connection (health, last/next sync, counts) with Sync now,
//! Pause/Resume and Disconnect, and the OAuth connect flow for another account.
import { useEffect, useRef, useState } from "react";
import { api, errorText, ok, type Connection, type Health, type Provider } from "../api/client";
import { Dialog, Empty, ErrorState, HealthLight, HealthReasons, notLoaded, Notice, Spinner } from "../components/ui";
import { PROVIDERS, label, providerName, relative } from "../format";
import { usePoll } from "../hooks";
import { Link, navigate, useLocation } from "../router";
import { waitForJob, type SyncOutcome } from "../sync";

/** The notice for a return from the OAuth flow (`?connected=` or `?oauth_error=`), if any. */
function oauthNotice(q: URLSearchParams): { kind: "success" | "error"; text: string } | null {
  const connected = q.get("connected");
  if (connected) return { kind: "success", text: `Connected: the new connection ${connected} syncs now.` };
  const error = q.get("oauth_error");
  if (!error) return null;
  const detail = q.get("oauth_error_detail");
  return { kind: "error", text: `Connecting failed (${error})${detail ? `: ${detail}` : "."}` };
}

interface Row {
  connection: Connection;
  health: Health | null;
}

export function Connections() {
  const url = useLocation();
  const [notice, setNotice] = useState(() => oauthNotice(url.searchParams));
  const returned = url.searchParams.has("connected") || url.searchParams.has("oauth_error");
  useEffect(() => {
    if (returned) navigate("/connections", true);
  }, [returned]);

  const list = usePoll(async (): Promise<Row[]> => {
    const { items } = ok(await api.GET("/v1/connections"));
    return Promise.all(
      items.map(async (connection) => {
        const res = await api.GET("/v1/connections/{connection_id}/health", {
          params: { path: { connection_id: connection.id } },
        });
        return { connection, health: res.data ?? null };
      }),
    );
  }, []);

  return (
    <section aria-labelledby="connections-title">
      <div className="title-row">
        <h1 id="connections-title">Connections</h1>
        <ConnectForm
          onConnected={(c) => {
            setNotice({
              kind: "success",
              text: `Connected: ${providerName(c.provider)} account ${c.account_id ?? c.id}; its first sync runs now.`,
            });
            list.reload();
          }}
        />
      </div>
      {notice && (
        <Notice kind={notice.kind} onClose={() => setNotice(null)}>
          {notice.text}
        </Notice>
      )}
      {notLoaded(list, "connections") ??
        (list.data?.length === 0 ? (
          <Empty>No connections yet. Connect an account to start syncing.</Empty>
        ) : (
          <ul className="cards">
            {list.data?.map((row) => (
              <li key={row.connection.id}>
                <ConnectionCard row={row} reload={list.reload} />
              </li>
            ))}
          </ul>
        ))}
    </section>
  );
}

/** Connects another account: through the provider's consent page, or (Fireflies) with an API key,
 * which the API checks with the provider at once (a refused key is shown here). */
function ConnectForm({ onConnected }: { onConnected: (c: Connection) => void }) {
  const [provider, setProvider] = useState<Provider>("hubspot");
  const [sandbox, setSandbox] = useState(false);
  const [apiKey, setApiKey] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const byKey = PROVIDERS.find((p) => p.id === provider)?.connect === "key";
  const connectWithKey = async () => {
    const created = ok(await api.POST("/v1/connections", { body: { provider, access_token: apiKey.trim() } }));
    setApiKey("");
    setBusy(false);
    onConnected(created);
  };
  const connect = async () => {
    setBusy(true);
    setError(null);
    try {
      if (byKey) return await connectWithKey();
      const body = {
        redirect_uri: location.origin + "/v1/oauth/callback",
        return_to: "/connections",
        ...(provider === "salesforce" && sandbox ? { sandbox: true } : {}),
      };
      const res = ok(
        await api.POST("/v1/connections/oauth/{provider}/authorize", {
          params: { path: { provider } },
          body,
        }),
      );
      location.assign(res.authorize_url);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return (
    <form
      className="connect"
      onSubmit={(e) => {
        e.preventDefault();
        void connect();
      }}
    >
      <label>
        Provider{" "}
        <select
          value={provider}
          onChange={(e) => {
            setProvider(e.target.value as Provider);
            setError(null);
          }}
        >
          {PROVIDERS.map((p) => (
            <option key={p.id} value={p.id}>
              {p.name}
            </option>
          ))}
        </select>
      </label>
      {provider === "salesforce" && (
        <label>
          <input type="checkbox" checked={sandbox} onChange={(e) => setSandbox(e.target.checked)} /> Sandbox
        </label>
      )}
      {byKey && (
        <label>
          API key{" "}
          <input
            type="password"
            autoComplete="off"
            required
            value={apiKey}
            onChange={(e) => setApiKey(e.target.value)}
          />
        </label>
      )}
      <button type="submit" className="primary" disabled={busy || (byKey && apiKey.trim() === "")}>
        {busy ? <Spinner label="Connecting" /> : null} Connect another account
      </button>
      {error != null && (
        <p className="field-error" role="alert">
          {errorText(error)}
        </p>
      )}
    </form>
  );
}

/** What a disconnect does, as docs/api.md ("Disconnect") describes DELETE /v1/connections/{id}. */
function DisconnectText({ provider }: { provider: string }) {
  return (
    <>
      <p>Disconnecting this {providerName(provider)} connection:</p>
      <ul>
        <li>
          <strong>Erases</strong> its stored credentials (access and refresh tokens) and the connection itself,
          which leaves the schedule; jobs already queued for it are dropped.
        </li>
        <li>
          <strong>Revokes</strong> the grant at the provider (Microsoft has no revocation endpoint) and stops its
          push channel, if any.
        </li>
        <li>
          <strong>Keeps</strong> the audit log, and the synced records, which stay stored but are no longer
          reachable here (purging them is a separate operation).
        </li>
      </ul>
      <p>Connecting the same account again creates a new connection.</p>
    </>
  );
}

function ConnectionCard({ row, reload }: { row: Row; reload: () => Promise<void> }) {
  const { connection: c, health } = row;
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [syncing, setSyncing] = useState(false);
  const [result, setResult] = useState<SyncOutcome | null>(null);
  const [confirm, setConfirm] = useState(false);
  const unmounted = useRef(false);
  useEffect(
    () => () => {
      unmounted.current = true;
    },
    [],
  );
  const path = { connection_id: c.id };

  const act = async (name: string, f: () => Promise<unknown>) => {
    setBusy(name);
    setError(null);
    try {
      await f();
      await reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  };

  const syncNow = async () => {
    setError(null);
    setResult(null);
    setSyncing(true);
    try {
      const { job_id } = ok(await api.POST("/v1/connections/{connection_id}/sync", { params: { path } }));
      const done = await waitForJob(c.id, job_id, () => unmounted.current);
      if (unmounted.current) return;
      setResult(done);
      await reload();
    } catch (e) {
      setError(e);
    } finally {
      if (!unmounted.current) setSyncing(false);
    }
  };

  const counts = Object.entries(c.record_counts);
  const titleId = `conn-${c.id}`;
  return (
    <article className="card" aria-labelledby={titleId}>
      <header>
        <h2 id={titleId}>
          <Link href={`/connections/${c.id}`}>{providerName(c.provider)}</Link>
        </h2>
        <HealthLight status={health?.status ?? "unknown"} />
      </header>
      <p className="account">{c.account_id ?? c.base_url}</p>
      {health && <HealthReasons reasons={health.reasons} />}
      <p className="times">
        Last sync: {relative(c.last_sync_at)} • Next: {c.paused ? "paused" : relative(c.next_sync_at)}
      </p>
      <p className="status-line">
        Status: <span className={`badge ${c.status}`}>{label(c.status)}</span>
        {c.paused && <span className="badge paused">Paused</span>}
      </p>
      {counts.length > 0 ? (
        <dl className="counts" aria-label="Records">
          {counts.map(([object, n]) => (
            <div key={object}>
              <dt>{label(object)}</dt>
              <dd>{n}</dd>
            </div>
          ))}
        </dl>
      ) : (
        <p className="muted">No records yet.</p>
      )}
      {syncing && (
        <p className="syncing" role="status">
          <Spinner label="Syncing" /> Syncing…
        </p>
      )}
      {result && (
        <p className={`sync-result ${result.status}`} role="status">
          {result.status === "error"
            ? `Sync failed: ${result.error ?? "unknown error"}`
            : `Sync ${result.status}: ${result.pulled} pulled, ${result.created} created, ${result.updated} updated, ${result.deleted} deleted, ${result.unchanged} unchanged.`}
          {result.status !== "error" && result.error ? ` ${result.error}` : ""}
        </p>
      )}
      {error != null && <ErrorState error={error} />}
      <div className="actions">
        <button type="button" onClick={() => void syncNow()} disabled={syncing || c.paused}>
          Sync now
        </button>
        {c.paused ? (
          <button
            type="button"
            disabled={busy !== null}
            onClick={() => void act("resume", async () => ok(await api.POST("/v1/connections/{connection_id}/resume", { params: { path } })))}
          >
            Resume
          </button>
        ) : (
          <button
            type="button"
            disabled={busy !== null}
            onClick={() => void act("pause", async () => ok(await api.POST("/v1/connections/{connection_id}/pause", { params: { path } })))}
          >
            Pause
          </button>
        )}
        <Link className="button" href={`/connections/${c.id}`}>
          Details
        </Link>
        <button type="button" className="danger" onClick={() => setConfirm(true)}>
          Disconnect
        </button>
      </div>
      <Dialog open={confirm} title={`Disconnect ${providerName(c.provider)}?`} onClose={() => setConfirm(false)}>
        <DisconnectText provider={c.provider} />
        <div className="actions">
          <button type="button" onClick={() => setConfirm(false)} autoFocus>
            Cancel
          </button>
          <button
            type="button"
            className="danger"
            disabled={busy !== null}
            onClick={() =>
              void act("disconnect", async () => {
                const res = await api.DELETE("/v1/connections/{connection_id}", { params: { path } });
                if (!res.response.ok) ok(res);
                setConfirm(false);
              })
            }
          >
            Disconnect
          </button>
        </div>
      </Dialog>
    </article>
  );
}

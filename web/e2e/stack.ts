// The private local stack of the e2e run: its binary, tokens, and small clients of the API (with a
// tenant's dev token) and of the HubSpot fake (with the fake's token), for arranging and checking.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const WEB_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_ROOT = resolve(WEB_DIR, "..");

export function binary(): string {
  if (process.env.SYNCBRIDGE_BIN) return process.env.SYNCBRIDGE_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(REPO_ROOT, "target");
  return join(resolve(REPO_ROOT, target), "debug", "syncbridge");
}

export function stopStack() {
  const home = process.env.SYNCBRIDGE_HOME;
  if (!home) return;
  try {
    execFileSync(binary(), ["down"], { env: process.env, stdio: "inherit", timeout: 60_000 });
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

export function tokenFor(tenant: string): string {
  return execFileSync(binary(), ["token", "--tenant", tenant], { env: process.env, encoding: "utf8" }).trim();
}

export const apiUrl = () => process.env.SYNCBRIDGE_E2E_API_URL!;
export const hubspotUrl = () => process.env.SYNCBRIDGE_E2E_HUBSPOT_URL!;

async function call(base: string, token: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The API as one tenant. */
export class Api {
  constructor(readonly token: string) {}
  get<T = Record<string, unknown>>(path: string) {
    return call(apiUrl(), this.token, "GET", path) as Promise<T>;
  }
  post<T = Record<string, unknown>>(path: string, body?: unknown) {
    return call(apiUrl(), this.token, "POST", path, body) as Promise<T>;
  }

  /** A HubSpot connection to the fake, with the fake's private-app token. */
  async connectHubspot(): Promise<string> {
    const c = await this.post<{ id: string }>("/v1/connections", {
      provider: "hubspot",
      base_url: hubspotUrl(),
      access_token: process.env.SYNCBRIDGE_E2E_HUBSPOT_TOKEN,
    });
    return c.id;
  }

  /** A Fireflies connection to the fake (no base URL: the stack sends Fireflies' origin there). */
  async connectFireflies(): Promise<string> {
    const c = await this.post<{ id: string }>("/v1/connections", {
      provider: "fireflies",
      access_token: process.env.SYNCBRIDGE_E2E_FIREFLIES_KEY,
    });
    return c.id;
  }

  /** Asks for a sync and waits until its runs finish (continuations included). */
  async sync(id: string): Promise<void> {
    const { job_id } = await this.post<{ job_id: string }>(`/v1/connections/${id}/sync`);
    for (let i = 0; i < 120; i++) {
      const { items } = await this.get<{ items: { job_id: string; status: string }[] }>(`/v1/connections/${id}/runs?limit=50`);
      const pos = items.findIndex((r) => r.job_id === job_id);
      if (pos >= 0 && items[0]!.status !== "continued") return;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`the sync of ${id} did not finish`);
  }

  async contacts(id: string): Promise<{ record_id: string; external_id: string; fields: Record<string, unknown> }[]> {
    const page = await this.get<{ items: { record_id: string; external_id: string; fields: Record<string, unknown> }[] }>(
      `/v1/connections/${id}/records?object=contacts&limit=100`,
    );
    return page.items;
  }
}

/** The HubSpot fake's CRM API, as the HubSpot account's owner. */
export const hubspot = {
  async get<T = Record<string, unknown>>(path: string): Promise<T> {
    return call(hubspotUrl(), process.env.SYNCBRIDGE_E2E_HUBSPOT_TOKEN!, "GET", path) as Promise<T>;
  },
  async patch(path: string, body: unknown): Promise<unknown> {
    return call(hubspotUrl(), process.env.SYNCBRIDGE_E2E_HUBSPOT_TOKEN!, "PATCH", path, body);
  },
  async notes(): Promise<string[]> {
    const page = await this.get<{ results: { properties: Record<string, string | null> }[] }>(
      "/crm/v3/objects/notes?limit=100&properties=hs_note_body",
    );
    return page.results.map((n) => n.properties.hs_note_body ?? "");
  },
  async contact(externalId: string): Promise<Record<string, string | null>> {
    const c = await this.get<{ properties: Record<string, string | null> }>(
      `/crm/v3/objects/contacts/${externalId}?properties=phone`,
    );
    return c.properties;
  },
};

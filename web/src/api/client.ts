//! The typed API client: openapi-fetch over the generated `paths`, same-origin relative URLs,
//! the bearer token on every call, and problem bodies turned into `ApiError`s.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Connection = Schemas["ConnectionView"];
export type Health = Schemas["HealthView"];
export type PushItem = Schemas["PushView"];
export type Conflict = Schemas["ConflictView"];
export type Run = Schemas["RunView"];
export type AuditEntry = Schemas["AuditEntryView"];
export type Settings = Schemas["SettingsView"];
export type SettingsPatch = Schemas["SettingsPatch"];
export type Provider = Schemas["Provider"];

/** A problem body (`application/problem+json`), with `errors` when the API lists several. */
export interface Problem {
  status: number;
  code?: string;
  title?: string;
  detail?: string | null;
  errors?: unknown;
}

export class ApiError extends Error {
  readonly problem: Problem;
  constructor(problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${problem.status}`);
    this.problem = problem;
  }
}

let token: string | null = null;
let onUnauthorized: () => void = () => {};

/** Sets the bearer token every call sends, and what a 401 answer does. */
export function configureAuth(bearer: string | null, unauthorized: () => void) {
  token = bearer;
  onUnauthorized = unauthorized;
}

export function bearer(): string | null {
  return token;
}

const auth: Middleware = {
  onRequest({ request }) {
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
  onResponse({ response }) {
    if (response.status === 401) onUnauthorized();
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: location.origin });
api.use(auth);

/** Turns an openapi-fetch result into its data, or throws the problem it carried. */
export function ok<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.response.ok && result.error === undefined) return result.data as T;
  throw new ApiError(toProblem(result.response.status, result.error));
}

export function toProblem(status: number, body: unknown): Problem {
  if (body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    return {
      status,
      code: typeof b.code === "string" ? b.code : undefined,
      title: typeof b.title === "string" ? b.title : typeof b.message === "string" ? b.message : undefined,
      detail: typeof b.detail === "string" ? b.detail : null,
      errors: b.errors,
    };
  }
  return { status, title: typeof body === "string" && body ? body : `HTTP ${status}` };
}

/** A plain `fetch` of an API URL with the token (downloads), throwing the problem on failure. */
export async function fetchWithToken(path: string): Promise<Response> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { headers });
  if (response.status === 401) onUnauthorized();
  if (!response.ok) {
    let body: unknown;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    throw new ApiError(toProblem(response.status, body));
  }
  return response;
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    const p = e.problem;
    const head = p.title ?? `HTTP ${p.status}`;
    return p.detail ? `${head}: ${p.detail}` : head;
  }
  return e instanceof Error ? e.message : String(e);
}

//! Sign-in: reads `/config.json` at start. Dev mode takes the token from `#token=` (kept in
//! sessionStorage); OIDC mode runs the authorization code flow with PKCE through oidc-client-ts.
import type { UserManager } from "oidc-client-ts";

export const TOKEN_KEY = "syncbridge.token";
export const OIDC_CALLBACK_PATH = "/auth/callback";

export type AuthConfig =
  | { mode: "dev" }
  | { mode: "oidc"; authority: string; client_id: string; scope?: string; token?: "access_token" | "id_token" };

export type Session =
  | { kind: "signed-in"; mode: "dev" | "oidc"; token: string; signOut: () => void; relogin: () => void }
  | { kind: "signed-out"; mode: "dev" }
  | { kind: "error"; message: string };

export async function loadConfig(): Promise<AuthConfig> {
  try {
    const res = await fetch("/config.json", { headers: { Accept: "application/json" } });
    if (!res.ok) return { mode: "dev" };
    const body = (await res.json()) as { auth?: Partial<AuthConfig> & Record<string, unknown> };
    const auth = body.auth;
    if (auth?.mode === "oidc" && typeof auth.authority === "string" && typeof auth.client_id === "string") {
      return {
        mode: "oidc",
        authority: auth.authority,
        client_id: auth.client_id,
        scope: typeof auth.scope === "string" ? auth.scope : undefined,
        token: auth.token === "access_token" ? "access_token" : "id_token",
      };
    }
    return { mode: "dev" };
  } catch {
    // No config.json (or not JSON, e.g. a dev server's fallback page): local dev mode.
    return { mode: "dev" };
  }
}

/** Dev mode: a `#token=` in the URL wins, is stored, and is stripped from the address bar. */
export function devSession(): Session {
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  const fromHash = hash.get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(history.state, "", location.pathname + location.search);
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  const signOut = () => sessionStorage.removeItem(TOKEN_KEY);
  if (!token) return { kind: "signed-out", mode: "dev" };
  return { kind: "signed-in", mode: "dev", token, signOut, relogin: signOut };
}

/** OIDC mode: finishes a login coming back to the callback path, or starts one. */
export async function oidcSession(config: Extract<AuthConfig, { mode: "oidc" }>): Promise<Session | null> {
  const { UserManager, WebStorageStateStore } = await import("oidc-client-ts");
  const manager: UserManager = new UserManager({
    authority: config.authority,
    client_id: config.client_id,
    redirect_uri: location.origin + OIDC_CALLBACK_PATH,
    post_logout_redirect_uri: location.origin + "/",
    response_type: "code",
    scope: config.scope ?? "openid email profile",
    userStore: new WebStorageStateStore({ store: sessionStorage }),
    automaticSilentRenew: false,
  });
  const login = () => {
    void manager.signinRedirect({ state: location.pathname + location.search });
  };
  try {
    if (location.pathname === OIDC_CALLBACK_PATH) {
      const user = await manager.signinRedirectCallback();
      const back = typeof user.state === "string" && user.state.startsWith("/") ? user.state : "/";
      history.replaceState(null, "", back);
    }
    const user = await manager.getUser();
    // The ID token by default: it carries the tenant claim the API's JWT authorizer reads.
    const token = user && !user.expired ? (config.token === "access_token" ? user.access_token : user.id_token) : null;
    if (!token) {
      login();
      return null;
    }
    return {
      kind: "signed-in",
      mode: "oidc",
      token,
      signOut: () => void manager.signoutRedirect(),
      relogin: () => {
        void manager.removeUser().then(login);
      },
    };
  } catch (e) {
    return { kind: "error", message: e instanceof Error ? e.message : String(e) };
  }
}

//! Entry point: signs in (dev token or OIDC), then renders the dashboard.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { configureAuth } from "./api/client";
import { App, SIGNED_OUT_EVENT } from "./App";
import { TOKEN_KEY, devSession, loadConfig, oidcSession, type Session } from "./auth";
import "./styles.css";

async function start() {
  const root = createRoot(document.getElementById("root")!);
  const config = await loadConfig();
  const session: Session | null = config.mode === "oidc" ? await oidcSession(config) : devSession();
  if (!session) return; // redirecting to the identity provider
  // Before the first render: the screens' first requests already carry the token.
  configureAuth(session.kind === "signed-in" ? session.token : null, () => {
    if (session.kind === "signed-in" && session.mode === "oidc") session.relogin();
    else {
      sessionStorage.removeItem(TOKEN_KEY);
      window.dispatchEvent(new Event(SIGNED_OUT_EVENT));
    }
  });
  root.render(
    <StrictMode>
      <App session={session} />
    </StrictMode>,
  );
}

void start();

//! Entry point: signs in (dev token or OIDC), then renders the dashboard.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { devSession, loadConfig, oidcSession, type Session } from "./auth";
import "./styles.css";

async function start() {
  const root = createRoot(document.getElementById("root")!);
  const config = await loadConfig();
  const session: Session | null = config.mode === "oidc" ? await oidcSession(config) : devSession();
  if (!session) return; // redirecting to the identity provider
  root.render(
    <StrictMode>
      <App session={session} />
    </StrictMode>,
  );
}

void start();

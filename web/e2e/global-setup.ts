// Starts a private local stack for the run (its own SYNCBRIDGE_HOME in a temp dir, ports picked by
// the stack, a 2-second schedule) and finds where the dashboard is served: the stack's gateway
// serves web/dist itself; without that, `vite preview` proxies /v1 to it.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, WEB_DIR, binary, stopStack } from "./stack";

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function servesDashboard(url: string): Promise<boolean> {
  try {
    const res = await fetch(url + "/connections");
    return res.ok && (res.headers.get("content-type") ?? "").includes("text/html");
  } catch {
    return false;
  }
}

async function waitFor(url: string, tries = 100) {
  for (let i = 0; i < tries; i++) {
    if (await servesDashboard(url)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`nothing serves the dashboard at ${url}`);
}

export default async function globalSetup() {
  if (!process.env.MOTO_SERVER) throw new Error("MOTO_SERVER must name moto_server (make e2e sets it)");
  const home = mkdtempSync(join(tmpdir(), "syncbridge-e2e-"));
  process.env.SYNCBRIDGE_HOME = home;
  process.env.SYNCBRIDGE_WEB_DIR = join(WEB_DIR, "dist");
  try {
    execFileSync(binary(), ["up", "--tick-seconds", "2", "--contacts", "25"], {
      cwd: REPO_ROOT,
      env: process.env,
      stdio: ["ignore", "pipe", "inherit"],
      timeout: 120_000,
    });
    const info = JSON.parse(readFileSync(join(home, "stack.json"), "utf8")) as Record<string, string>;
    process.env.SYNCBRIDGE_E2E_API_URL = info.api_url;
    process.env.SYNCBRIDGE_E2E_HUBSPOT_URL = info.hubspot_url;
    process.env.SYNCBRIDGE_E2E_HUBSPOT_TOKEN = info.hubspot_token;
    if (await servesDashboard(info.api_url!)) {
      process.env.SYNCBRIDGE_E2E_BASE_URL = info.api_url;
      return;
    }
    const port = await freePort();
    const preview = spawn(
      join(WEB_DIR, "node_modules/.bin/vite"),
      ["preview", "--port", String(port), "--strictPort"],
      { cwd: WEB_DIR, env: { ...process.env, SYNCBRIDGE_API_URL: info.api_url }, stdio: "ignore", detached: true },
    );
    preview.unref();
    process.env.SYNCBRIDGE_E2E_PREVIEW_PID = String(preview.pid);
    const base = `http://127.0.0.1:${port}`;
    await waitFor(base);
    process.env.SYNCBRIDGE_E2E_BASE_URL = base;
  } catch (e) {
    stopStack();
    throw e;
  }
}

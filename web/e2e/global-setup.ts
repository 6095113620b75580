// Starts a private local stack for the run (its own SYNCBRIDGE_HOME in a temp dir, ports picked by
// the stack, a 2-second schedule); its gateway serves the built dashboard (web/dist) beside the API.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, binary, stopStack } from "./stack";

async function servesDashboard(url: string): Promise<boolean> {
  try {
    const res = await fetch(url + "/connections");
    return res.ok && (await res.text()).includes(`<div id="root">`);
  } catch {
    return false;
  }
}

export default async function globalSetup() {
  if (!process.env.MOTO_SERVER) throw new Error("MOTO_SERVER must name moto_server (make e2e sets it)");
  const home = mkdtempSync(join(tmpdir(), "syncbridge-e2e-"));
  process.env.SYNCBRIDGE_HOME = home;
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
    process.env.SYNCBRIDGE_E2E_FIREFLIES_KEY = info.fireflies_api_key;
    if (!(await servesDashboard(info.api_url!))) throw new Error(`the gateway at ${info.api_url} serves no dashboard`);
    process.env.SYNCBRIDGE_E2E_BASE_URL = info.api_url;
  } catch (e) {
    stopStack();
    throw e;
  }
}

// Fixtures of the dashboard tests: a tenant of its own per test, its API client, signing in
// through the `#token=` link, a guard that fails the test on any console error or page error,
// and `checkScreen` (axe: no serious or critical violation; screenshots at desktop and phone width).
import AxeBuilder from "@axe-core/playwright";
import { test as base, expect, type Page } from "@playwright/test";
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { Api, REPO_ROOT, tokenFor } from "./stack";

export const SCREENSHOTS = join(REPO_ROOT, "target", "screenshots");
export const PHONE = { width: 390, height: 844 };

interface Fixtures {
  tenant: string;
  api: Api;
  /** Opens `path` signed in as the test's tenant (the dev link: `#token=`). */
  signIn: (path: string) => Promise<void>;
  /** Console messages the test expects (an answer the test provokes on purpose). */
  allowConsole: RegExp[];
  consoleGuard: void;
}

export const test = base.extend<Fixtures>({
  // eslint-disable-next-line no-empty-pattern -- Playwright reads the fixtures a fixture needs from this pattern
  tenant: async ({}, use, info) => {
    const slug = info.title.toLowerCase().replace(/[^a-z0-9]+/g, "-").slice(0, 30).replace(/-+$/, "");
    await use(`e2e-${slug}-${Date.now().toString(36)}`);
  },
  api: async ({ tenant }, use) => {
    await use(new Api(tokenFor(tenant)));
  },
  signIn: async ({ page, api }, use) => {
    await use(async (path: string) => {
      await page.goto(`${path}#token=${api.token}`);
      await expect(page).not.toHaveURL(/#token=/);
    });
  },
  allowConsole: [[], { option: true }],
  consoleGuard: [
    async ({ page, allowConsole, baseURL }, use) => {
      const errors: string[] = [];
      const ours = new URL(baseURL!).origin;
      page.on("console", (m) => {
        if (m.type() !== "error") return;
        // Only the dashboard's pages: not the provider's consent page (the HubSpot fake's origin).
        if (new URL(page.url()).origin !== ours) return;
        const where = m.location().url;
        // A missing /config.json means dev mode (the documented contract), not an error.
        if (/\/config\.json$/.test(where) && /status of 404/.test(m.text())) return;
        const text = `${m.text()} (${where})`;
        if (allowConsole.some((r) => r.test(text))) return;
        errors.push(text);
      });
      page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
      await use();
      expect(errors, "console errors and page errors").toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };

/** One line per screen and width in target/screenshots/axe.txt, for the record. */
function record(screen: string, results: Awaited<ReturnType<AxeBuilder["analyze"]>>) {
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  mkdirSync(SCREENSHOTS, { recursive: true });
  appendFileSync(
    join(SCREENSHOTS, "axe.txt"),
    `${screen}: ${results.violations.length} violations (${bad.length} serious or critical), ${results.passes.length} rules passed` +
      (results.violations.length ? ` [${results.violations.map((v) => `${v.id}:${v.impact}`).join(", ")}]` : "") +
      "\n",
  );
}

/** axe on the page as it is (no serious or critical violation), then screenshots at desktop
 * and phone width under target/screenshots/. */
export async function checkScreen(page: Page, name: string) {
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  record(`${name} (desktop)`, results);
  expect(
    bad.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join("; ")}`),
    `axe on ${name}`,
  ).toEqual([]);
  const desktop = page.viewportSize();
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  const phone = await new AxeBuilder({ page }).analyze();
  record(`${name} (390 px)`, phone);
  const badPhone = phone.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(badPhone.map((v) => `${v.id}: ${v.help}`), `axe on ${name} at phone width`).toEqual([]);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow, `${name} fits 390 px without horizontal scrolling`).toBeLessThanOrEqual(0);
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-phone.png`), fullPage: true });
  if (desktop) await page.setViewportSize(desktop);
}

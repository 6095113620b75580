// The dashboard end to end: a real Chromium against a private local stack (moto, the HubSpot fake,
// the worker and the API), one tenant per test.
import { readFileSync } from "node:fs";
import { checkScreen, expect, test } from "./fixtures";
import { hubspot } from "./stack";

const unique = () => Date.now().toString(36) + Math.random().toString(36).slice(2, 6);

test("a new tenant sees the empty state of every screen", async ({ page, signIn }) => {
  await signIn("/connections");
  await expect(page.getByText("No connections yet")).toBeVisible();
  await page.getByRole("link", { name: "Approval queue" }).click();
  await expect(page.getByText("Nothing in the queue with status pending")).toBeVisible();
  await page.getByRole("link", { name: "Conflicts" }).click();
  await expect(page.getByText("No open conflicts")).toBeVisible();
  await page.getByRole("link", { name: "Audit log" }).click();
  await expect(page.getByText("No audit entries match")).toBeVisible();
});

test("connecting HubSpot through the consent page shows the connection and its first sync's counts", async ({
  page,
  signIn,
  api,
}) => {
  await signIn("/connections");
  await page.getByLabel("Provider").selectOption("hubspot");
  await page.getByRole("button", { name: "Connect another account" }).click();
  await page.getByRole("button", { name: "Connect app" }).click();
  await expect(page).toHaveURL(/\/connections$/);
  await expect(page.getByRole("status").filter({ hasText: "Connected: the new connection" })).toBeVisible();

  const { items } = await api.get<{ items: { id: string; account_id: string | null }[] }>("/v1/connections");
  expect(items).toHaveLength(1);
  const card = page.getByRole("article", { name: "HubSpot" });
  await expect(card.getByText(items[0]!.account_id ?? "no account id")).toBeVisible();
  // The schedule runs the first (full) sync; the card shows its counts when it lands.
  await expect(card.locator(".counts div", { hasText: "Contacts" }).locator("dd")).toHaveText("25", { timeout: 60_000 });
  await expect(card.getByText(/Last sync: (just now|\d+ min ago)/)).toBeVisible();
  await expect(card.getByText("Healthy")).toBeVisible();
  await checkScreen(page, "connections");
});

test.describe("connecting with an API key", () => {
  // The refused key's 422 is logged by the browser; the screen shows the API's problem.
  test.use({ allowConsole: [/status of 422/] });
  test("connecting Fireflies with an API key checks the key, then shows the account and its transcripts", async ({
    page,
    signIn,
  }) => {
    await signIn("/connections");
    await page.getByLabel("Provider").selectOption("fireflies");
    const connect = page.getByRole("button", { name: "Connect another account" });
    await expect(connect).toBeDisabled();
    await page.getByLabel("API key").fill("ff_not_a_key");
    await connect.click();
    await expect(page.getByRole("alert")).toContainText("did not accept this access token");
    await expect(page.getByText("No connections yet")).toBeVisible();

    await page.getByLabel("API key").fill(process.env.SYNCBRIDGE_E2E_FIREFLIES_KEY!);
    await connect.click();
    await expect(page.getByRole("status").filter({ hasText: "Connected: Fireflies account ada@acme.example" })).toBeVisible();
    await expect(page.getByLabel("API key")).toHaveValue("");
    const card = page.getByRole("article", { name: "Fireflies" });
    await expect(card.getByText("ada@acme.example")).toBeVisible();
    await expect(card.locator(".counts div", { hasText: "Transcripts" }).locator("dd")).toHaveText("3", { timeout: 60_000 });
    await checkScreen(page, "connect-by-key");
  });
});

test("the tasks screen lists the follow-up tasks of the Fireflies meetings with their action items", async ({
  page,
  signIn,
  api,
}) => {
  await api.sync(await api.connectFireflies());
  await signIn("/connections");
  await page.getByRole("link", { name: "Tasks" }).click();
  await expect(page.getByRole("heading", { name: "Tasks", level: 1 })).toBeVisible();
  const items = page.locator("ul.items > li");
  await expect(items).toHaveCount(3);
  const first = items.first();
  await expect(first.getByText(/^Follow up: Meeting \d+$/)).toBeVisible();
  await expect(first.getByText("Follow-up", { exact: true })).toBeVisible();
  await expect(first.getByRole("list", { name: "Action items" }).getByRole("listitem")).toHaveCount(2);
  await expect(first.getByText(/^Send the revised proposal to contact\d+/)).toBeVisible();
  await expect(first.getByText(/^Due /)).toBeVisible();
  await checkScreen(page, "tasks");
  // Only research tasks: none, and the empty state says where tasks come from.
  await page.getByLabel("Kind").selectOption("research");
  await expect(page.getByText(/No open tasks of this kind/)).toBeVisible();
});

test("sync now shows a spinner until its run finishes, then that run's counts", async ({ page, signIn, api }) => {
  const id = await api.connectHubspot();
  await api.sync(id);
  await signIn("/connections");
  const card = page.getByRole("article", { name: "HubSpot" });
  await card.getByRole("button", { name: "Sync now" }).click();
  await expect(card.getByText("Syncing…")).toBeVisible();
  const result = card.getByText(/^Sync succeeded: \d+ pulled/);
  await expect(result).toBeVisible({ timeout: 60_000 });
  await expect(card.getByText("Syncing…")).toHaveCount(0);
  const { items: runs } = await api.get<{ items: { reason: string; counts: { pulled?: number; unchanged?: number } }[] }>(
    `/v1/connections/${id}/runs`,
  );
  const manual = runs.find((r) => r.reason === "manual")!;
  await expect(result).toContainText(`${manual.counts.pulled ?? 0} pulled`);
  await expect(result).toContainText(`${manual.counts.unchanged ?? 0} unchanged`);

  await card.getByRole("link", { name: "Details" }).click();
  await expect(page.getByRole("heading", { name: /HubSpot/, level: 1 })).toBeVisible();
  await expect(page.getByRole("row", { name: /Contacts Synced 25/ })).toBeVisible();
  await expect(page.getByRole("img", { name: /Records pulled \(bars\) and duration \(line\) of the last \d+ runs/ })).toBeVisible();
  await expect(page.getByRole("cell", { name: "Manual" }).first()).toBeVisible();
  await expect(page.getByText("Retry state: None")).toBeVisible();
  await checkScreen(page, "connection-detail");
});

test("an approved note from the queue arrives in HubSpot", async ({ page, signIn, api }) => {
  const id = await api.connectHubspot();
  await api.sync(id);
  const [contact] = await api.contacts(id);
  const text = `Met at the e2e summit ${unique()}`;
  await api.post(`/v1/connections/${id}/push`, {
    action: "create_note",
    priority: "high",
    record_id: contact!.record_id,
    fields: { body: text },
    idempotency_key: `e2e-note-${unique()}`,
  });

  await signIn("/queue");
  const item = page.getByRole("listitem").filter({ hasText: text });
  await expect(item.getByLabel("Note text")).toHaveText(`[ARIA] ${text}`);
  await expect(item.getByText(`On: ${String(contact!.fields.first_name)} ${String(contact!.fields.last_name)}`)).toBeVisible();
  await expect(item.getByText("High")).toBeVisible();
  await expect(item.getByText(/expires in (7d|6d)/)).toBeVisible();
  await checkScreen(page, "queue");
  await item.getByRole("checkbox").check();
  await page.getByRole("button", { name: "Approve selected (1)" }).click();
  await expect(page.getByText("Approved 1 item.")).toBeVisible();
  await expect(page.getByRole("listitem").filter({ hasText: text })).toHaveCount(0);

  // The note carries our idempotency tag after the text.
  await expect
    .poll(async () => (await hubspot.notes()).some((n) => n.startsWith(`[ARIA] ${text}`)), { timeout: 60_000 })
    .toBe(true);
  await page.getByLabel("Status").selectOption("completed");
  await expect(page.getByRole("listitem").filter({ hasText: text }).getByText(/written as \d+/)).toBeVisible();
});

test("the queue previews a new record's values and what a delete removes, and an approved create arrives in HubSpot", async ({
  page,
  signIn,
  api,
}) => {
  const id = await api.connectHubspot();
  await api.sync(id);
  const [, contact] = await api.contacts(id);
  const email = `nia-${unique()}@initech.example`;
  await api.post(`/v1/connections/${id}/push`, {
    action: "create_record",
    object: "contacts",
    fields: { email, first_name: "Nia", last_name: "Okafor" },
    idempotency_key: `e2e-create-${unique()}`,
  });
  await api.post(`/v1/connections/${id}/push`, {
    action: "delete_record",
    record_id: contact!.record_id,
    idempotency_key: `e2e-delete-${unique()}`,
  });

  await signIn("/queue");
  const create = page.getByRole("listitem").filter({ hasText: email });
  await expect(create.getByText("New contact")).toBeVisible();
  await expect(create.getByLabel("New record")).toContainText("first_name");
  await expect(create.getByLabel("New record")).toContainText("Nia");
  const name = `${String(contact!.fields.first_name)} ${String(contact!.fields.last_name)}`;
  const remove = page.getByRole("listitem").filter({ hasText: "Delete record" });
  await expect(remove.getByLabel("Record to delete")).toContainText(`Deletes the contact ${name}`);
  await expect(remove.getByText(/a later change at the provider stops the delete/)).toBeVisible();
  await checkScreen(page, "queue-records");
  await create.getByRole("checkbox").check();
  await page.getByRole("button", { name: "Approve selected (1)" }).click();
  await expect(page.getByText("Approved 1 item.")).toBeVisible();
  await expect
    .poll(async () => (await api.contacts(id)).some((c) => c.fields.email === email), { timeout: 60_000 })
    .toBe(true);
  await page.getByLabel("Status").selectOption("completed");
  await expect(page.getByRole("listitem").filter({ hasText: email }).getByText(/written as \d+/)).toBeVisible();
});

test("a conflict resolved with Use local and another with Use remote end up so on both sides", async ({
  page,
  signIn,
  api,
}) => {
  const id = await api.connectHubspot();
  await api.sync(id);
  await signIn(`/connections/${id}`);
  await page.getByLabel("Conflict policy preset").selectOption("manual");
  await page.getByRole("button", { name: "Save settings" }).click();
  await expect(page.getByText(/Saved \(version \d+\)/)).toBeVisible();
  const settings = await api.get<{ conflict_policy: { fallback: string; source_hierarchy: boolean } }>(
    `/v1/connections/${id}/settings`,
  );
  expect(settings.conflict_policy).toMatchObject({ fallback: "manual", source_hierarchy: false });

  const contacts = (await api.contacts(id)).slice(-2);
  const [a, b] = contacts as [(typeof contacts)[0], (typeof contacts)[0]];
  const tag = unique();
  for (const [c, who] of [
    [a, "a"],
    [b, "b"],
  ] as const) {
    await api.post(`/v1/connections/${id}/records/${c.record_id}/edit`, {
      fields: { phone: `+1-555-local-${who}-${tag}` },
      idempotency_key: `e2e-edit-${who}-${tag}`,
    });
    await hubspot.patch(`/crm/v3/objects/contacts/${c.external_id}`, { properties: { phone: `+1-555-remote-${who}-${tag}` } });
  }

  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Connections" }).click();
  const card = page.getByRole("article", { name: "HubSpot" });
  await card.getByRole("button", { name: "Sync now" }).click();
  await expect(card.getByText(/^Sync succeeded/)).toBeVisible({ timeout: 60_000 });

  await page.getByRole("link", { name: "Conflicts" }).click();
  const itemA = page.getByRole("listitem", { name: `Conflict Contacts ${a.external_id}: phone` });
  const itemB = page.getByRole("listitem", { name: `Conflict Contacts ${b.external_id}: phone` });
  await expect(itemA.getByText(`+1-555-local-a-${tag}`)).toBeVisible();
  await expect(itemA.getByText(`+1-555-remote-a-${tag}`)).toBeVisible();
  await expect(itemA.getByText(String(a.fields.phone))).toBeVisible();
  await expect(itemB).toBeVisible();
  await checkScreen(page, "conflicts");

  await itemA.getByRole("button", { name: /^Use local/ }).click();
  await expect(page.getByText("Resolved 1 conflict (use local).")).toBeVisible();
  await itemB.getByRole("button", { name: /^Use remote/ }).click();
  await expect(page.getByText("Resolved 1 conflict (use remote).")).toBeVisible();
  await expect(page.getByText("No open conflicts.")).toBeVisible();

  const local = async (recordId: string) =>
    (await api.get<{ fields: { phone: string } }>(`/v1/connections/${id}/records/${recordId}`)).fields.phone;
  expect(await local(a.record_id)).toBe(`+1-555-local-a-${tag}`);
  expect(await local(b.record_id)).toBe(`+1-555-remote-b-${tag}`);
  // Use local pushes ours at the next sync; Use remote leaves HubSpot as it is.
  await api.sync(id);
  await expect.poll(async () => (await hubspot.contact(a.external_id)).phone, { timeout: 60_000 }).toBe(`+1-555-local-a-${tag}`);
  expect((await hubspot.contact(b.external_id)).phone).toBe(`+1-555-remote-b-${tag}`);

  await page.getByLabel("Status").selectOption("resolved");
  await expect(itemA.getByText("Resolved: Use local")).toBeVisible();
  await expect(itemB.getByText("Resolved: Use remote")).toBeVisible();
});

test("pause and resume change the card and the connection", async ({ page, signIn, api }) => {
  const id = await api.connectHubspot();
  await signIn("/connections");
  const card = page.getByRole("article", { name: "HubSpot" });
  await card.getByRole("button", { name: "Pause" }).click();
  await expect(card.getByText("Next: paused")).toBeVisible();
  await expect(card.getByText("Paused", { exact: true })).toBeVisible();
  await expect(card.getByRole("button", { name: "Sync now" })).toBeDisabled();
  expect((await api.get<{ paused: boolean }>(`/v1/connections/${id}`)).paused).toBe(true);

  await card.getByRole("button", { name: "Resume" }).click();
  await expect(card.getByRole("button", { name: "Pause" })).toBeVisible();
  await expect(card.getByRole("button", { name: "Sync now" })).toBeEnabled();
  expect((await api.get<{ paused: boolean }>(`/v1/connections/${id}`)).paused).toBe(false);
});

test("the audit log exports as a CSV download with the bearer token", async ({ page, signIn, api }) => {
  const id = await api.connectHubspot();
  await api.sync(id);
  await signIn("/audit");
  await expect(page.getByRole("cell", { name: "Sync requested" }).first()).toBeVisible();
  await checkScreen(page, "audit");
  await page.getByLabel("Operation").selectOption("sync_requested");
  await expect(page.getByRole("cell", { name: "Pull" })).toHaveCount(0);

  const download = page.waitForEvent("download");
  await page.getByRole("button", { name: "Export CSV" }).click();
  const file = await download;
  expect(file.suggestedFilename()).toMatch(/^audit-.+\.csv$/);
  const csv = readFileSync((await file.path())!, "utf8");
  const lines = csv.trim().split(/\r?\n/);
  expect(lines[0]).toBe("entry_id,at,connection_id,record_id,object,operation,outcome,actor,detail,before,after");
  expect(lines.length).toBeGreaterThan(1);
  for (const line of lines.slice(1)) expect(line).toContain(`,${id},,,sync_requested,success,user:`);
  await expect(page.getByText(/^Downloaded audit-.+\.csv\./)).toBeVisible();
});

test("the disconnect dialog works by keyboard, says what is kept and erased, and disconnects", async ({
  page,
  signIn,
  api,
}) => {
  const id = await api.connectHubspot();
  await signIn("/connections");
  const card = page.getByRole("article", { name: "HubSpot" });
  const open = card.getByRole("button", { name: "Disconnect" });
  await open.focus();
  await page.keyboard.press("Enter");
  const dialog = page.getByRole("dialog", { name: "Disconnect HubSpot?" });
  await expect(dialog).toBeVisible();
  await expect(dialog).toContainText("Erases its stored credentials");
  await expect(dialog).toContainText("Keeps the audit log, and the synced records");
  await expect(dialog.getByRole("button", { name: "Cancel" })).toBeFocused();
  for (let i = 0; i < 4; i++) {
    await page.keyboard.press("Tab");
    const inside = await dialog.evaluate((d) => d.contains(document.activeElement) || document.activeElement === document.body);
    expect(inside, "focus stays in the dialog").toBe(true);
  }
  await page.keyboard.press("Escape");
  await expect(dialog).toBeHidden();
  await expect(open).toBeFocused();

  await page.keyboard.press("Enter");
  await expect(dialog).toBeVisible();
  await page.keyboard.press("Tab");
  await expect(dialog.getByRole("button", { name: "Disconnect" })).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(page.getByText("No connections yet")).toBeVisible();
  const res = await fetch(`${process.env.SYNCBRIDGE_E2E_API_URL}/v1/connections/${id}`, {
    headers: { Authorization: `Bearer ${api.token}` },
  });
  expect(res.status).toBe(404);
});

test.describe("answers the API refuses", () => {
  test.use({ allowConsole: [/status of 401/] });
  test("a token the API refuses shows the signed-out screen", async ({ page }) => {
    await page.goto("/connections#token=not-a-token");
    await expect(page.getByRole("heading", { name: "Signed out" })).toBeVisible();
    await expect(page.getByText("Open the link from syncbridge dashboard again")).toBeVisible();
    expect(await page.evaluate(() => sessionStorage.getItem("syncbridge.token"))).toBeNull();
    await checkScreen(page, "signed-out");
  });
});

test.describe("settings validation", () => {
  test.use({ allowConsole: [/status of 422/] });
  test("an interval out of range shows the API's problem detail", async ({ page, signIn, api }) => {
    const id = await api.connectHubspot();
    await signIn(`/connections/${id}`);
    await page.getByLabel("Sync interval (minutes)").fill("2");
    await page.getByRole("button", { name: "Save settings" }).click();
    await expect(page.getByRole("alert")).toContainText("interval_minutes must be between 5 and 1440");
    await page.getByLabel("Sync interval (minutes)").fill("30");
    await page.getByRole("button", { name: "Save settings" }).click();
    await expect(page.getByText(/Saved \(version \d+\)/)).toBeVisible();
    expect((await api.get<{ interval_minutes: number }>(`/v1/connections/${id}/settings`)).interval_minutes).toBe(30);
  });
});

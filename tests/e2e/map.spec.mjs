// The operator page in a real headless Chromium, against a running sasnp loaded by seed.mjs.
// Run by tests/e2e/run.sh (which sets E2E_URL, OP1_TOKEN, OP2_TOKEN, E2E_EXPECTED, E2E_OUT).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.E2E_URL;
const OUT = process.env.E2E_OUT || 'target/e2e';
const expected = JSON.parse(readFileSync(process.env.E2E_EXPECTED, 'utf8'));
const gpIds = Object.keys(expected.gpSlots);
mkdirSync(OUT, { recursive: true });

let browser;
const sessions = [];

/** A fresh browser context (its own sessionStorage: another operator's tab) on the page. */
async function openSession() {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, locale: 'fr-FR', timezoneId: 'Europe/Paris' });
  const page = await context.newPage();
  const problems = [];
  // A 409 answer is logged by Chromium as a failed resource: it is the expected outcome there.
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 409/.test(m.text())) problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  await page.goto(BASE + '/');
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
  const s = { context, page, problems };
  sessions.push(s);
  return s;
}

async function signIn(page, token) {
  await page.getByLabel('Jeton opérateur').fill(token);
  await page.getByLabel('Jeton opérateur').press('Enter');
  await page.getByRole('heading', { name: 'Rechercher un créneau' }).waitFor();
}

async function searchPostcode(page, postcode) {
  await page.evaluate(() => { delete document.body.dataset.results; });
  await page.getByLabel('Commune ou code postal du patient').fill(postcode);
  await page.getByRole('button', { name: 'Rechercher' }).click();
  await page.waitForSelector('body[data-results]', { timeout: 10000 });
}

const listedIds = (page) => page.$$eval('#result-list > li', (lis) => lis.map((li) => li.dataset.slotId));
const listedExternal = async (page, byId) => (await listedIds(page)).map((id) => byId.get(id));

before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  for (const s of sessions) {
    assert.deepEqual(s.problems, [], 'no console errors or CSP violations');
  }
  await browser?.close();
});

// slot_id (internal, from the API) → fixture id (E2E-nn): the page shows internal ids only.
const byId = new Map();
let op1;

test('the CPTS territories render from sasnp’s own data', async () => {
  op1 = await openSession();
  const { page } = op1;
  const features = await page.evaluate(async () => (await (await fetch('/v1/territories')).json()).features.length);
  assert.ok(features >= 40, `Pays de la Loire has ~43+ CPTS territories, got ${features}`);
  assert.equal(await page.getAttribute('body', 'data-territories'), String(features));
  const paths = await page.locator('.leaflet-overlay-pane path.leaflet-interactive').count();
  assert.equal(paths, features, 'one SVG path per territory');
  // Not signed in yet: the sign-in form is shown, labelled, and the search form is not.
  await assert.doesNotReject(page.getByLabel('Jeton opérateur').waitFor());
  assert.equal(await page.locator('#search-form').isVisible(), false);
});

test('a search by postal code lists the expected slots on the list and the map', async () => {
  const { page } = op1;
  await signIn(page, process.env.OP1_TOKEN);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sasnp.operatorToken')), process.env.OP1_TOKEN);

  // Learn the API's ids for the fixture's slots (the same search the page makes).
  const api = await page.evaluate(async (token) => {
    const r = await fetch('/v1/search?postcode=44000&profession=10&specialty=SM54&limit=30', { headers: { Authorization: `Bearer ${token}` } });
    return r.json();
  }, process.env.OP1_TOKEN);
  for (const r of api.results) byId.set(String(r.slot_id), r.external_id ?? null);

  await searchPostcode(page, '44000');
  const ids = await listedIds(page);
  assert.equal(ids.length, gpIds.length, `the ${gpIds.length} GP slots of the fixture`);
  assert.deepEqual(new Set(ids), new Set(api.results.map((r) => String(r.slot_id))));
  if ([...byId.values()].every(Boolean)) {
    const shown = await listedExternal(page, byId);
    assert.deepEqual(new Set(shown), new Set(gpIds), 'exactly the GP slots; not the nurse nor the busy slot');
  }

  // List content: local start time, distance, practitioner, CPTS, freshness.
  const first = page.locator('#result-list > li').first();
  const text = await first.innerText();
  assert.match(text, /\d+(,\d)? km/);
  assert.match(text, /Dr (Claire Moreau|Paul Nguyen|Julien Garnier)/);
  assert.match(text, /Données à jour/);
  assert.ok(text.includes(expected.cpts.name), `CPTS name in ${text}`);
  const allText = await page.locator('#result-list').innerText();
  for (const hhmm of Object.values(expected.gpSlots)) assert.ok(allText.includes(hhmm), `start ${hhmm} (Europe/Paris) listed`);
  assert.match(await page.locator('#summary').innerText(), /Nantes/);

  // Map: one marker per place, carrying the list numbers of its slots; together they number
  // every listed slot once. The patient's point and radius; the home territory highlighted.
  const places = new Set(api.results.map((r) => r.place.id));
  assert.equal(await page.locator('.leaflet-marker-pane .slot-marker').count(), places.size);
  const numbers = (await page.$$eval('.leaflet-marker-pane .slot-marker', (m) => m.map((x) => x.textContent)))
    .flatMap((label) => label.split('·').map(Number)).sort((a, b) => a - b);
  assert.deepEqual(numbers, gpIds.map((_, i) => i + 1));
  assert.equal(await page.locator('path[stroke="#c2185b"][stroke-dasharray]').count(), 1, 'the search radius');
  assert.equal(await page.locator('path[fill="#c2185b"]').count(), 1, "the patient's point");
  assert.equal(await page.locator('path[stroke="#c25e00"]').count(), 1, "the patient's CPTS highlighted");

  // The status message is announced (aria-live) and says how many.
  assert.match(await page.locator('#status').innerText(), new RegExp(`^${gpIds.length} créneaux`));

  // List ↔ map: the marker that carries n° 2, reached by keyboard (Enter), activates list item 2.
  await page.locator('.leaflet-marker-pane .slot-marker', { hasText: /(^|·)2(·|$)/ }).focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#result-list > li:nth-child(2).active');

  await page.screenshot({ path: join(OUT, 'map.png') });
});

test('hold → confirm books the slot, and it disappears from another operator’s search', async () => {
  const { page } = op1;
  const item = page.locator('#result-list > li').first();
  const slotId = await item.getAttribute('data-slot-id');
  await item.getByRole('button', { name: 'Bloquer ce créneau' }).click();
  const timer = item.getByRole('timer');
  await timer.waitFor();
  assert.match(await timer.innerText(), /^[0-5]:\d\d$/);
  // Confirming without a category is refused by the page, with a message.
  await item.getByRole('button', { name: 'Confirmer le rendez-vous' }).click();
  assert.match(await page.locator('#alert').innerText(), /catégorie d’orientation/);
  await item.getByLabel('Catégorie d’orientation').selectOption('001');
  await item.getByLabel('Référence patient (facultatif)').fill('REG-2026-0042');
  await item.getByRole('button', { name: 'Confirmer le rendez-vous' }).click();
  await item.locator('.outcome').waitFor();
  assert.match(await item.locator('.outcome').innerText(), /Rendez-vous enregistré .*001/);
  assert.match(await page.locator('#status').innerText(), /Rendez-vous confirmé/);
  await page.screenshot({ path: join(OUT, 'booked.png') });

  const op2 = await openSession();
  await signIn(op2.page, process.env.OP2_TOKEN);
  await searchPostcode(op2.page, '44000');
  const ids = await listedIds(op2.page);
  assert.equal(ids.length, gpIds.length - 1);
  assert.ok(!ids.includes(slotId), 'the booked slot is no longer offered');
});

test('a slot taken by another operator meanwhile gives a clear message (409)', async () => {
  const op2 = sessions[1];
  // Operator 2's list still shows slot #1 of their search; operator 1 takes it through the API.
  const item2 = op2.page.locator('#result-list > li').first();
  const slotId = await item2.getAttribute('data-slot-id');
  const held = await op1.page.evaluate(async ([id, token]) => {
    const r = await fetch(`/v1/slots/${id}/hold`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    return { status: r.status, body: await r.json() };
  }, [slotId, process.env.OP1_TOKEN]);
  assert.equal(held.status, 201);
  await item2.getByRole('button', { name: 'Bloquer ce créneau' }).click();
  await op2.page.locator('#alert').filter({ hasText: 'pris par un autre opérateur' }).waitFor();
  assert.match(await item2.innerText(), /Indisponible/);
  // Operator 1 releases it: operator 2 can then hold it and release it from the page.
  const released = await op1.page.evaluate(async ([hold, token]) =>
    (await fetch(`/v1/holds/${hold}`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } })).status,
  [held.body.hold_id, process.env.OP1_TOKEN]);
  assert.equal(released, 204);
  await searchPostcode(op2.page, '44000');
  const again = op2.page.locator(`#result-list > li[data-slot-id="${slotId}"]`);
  await again.getByRole('button', { name: 'Bloquer ce créneau' }).click();
  await again.getByRole('timer').waitFor();
  await again.getByRole('button', { name: 'Libérer' }).click();
  await op2.page.locator('#status').filter({ hasText: 'libéré' }).waitFor();
  await again.getByRole('button', { name: 'Bloquer ce créneau' }).waitFor();
});

test('accessibility basics: labelled controls, keyboard sign-out', async () => {
  const { page } = op1;
  const unlabelled = await page.$$eval('input, select, button', (els) => els
    .filter((e) => e.offsetParent !== null)
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim() && !e.title)
    .map((e) => e.outerHTML.slice(0, 80)));
  assert.deepEqual(unlabelled, []);
  await page.getByRole('button', { name: 'Se déconnecter' }).focus();
  await page.keyboard.press('Enter');
  await page.getByLabel('Jeton opérateur').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sasnp.operatorToken')), null);
});

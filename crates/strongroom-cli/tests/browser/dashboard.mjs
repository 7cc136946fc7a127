// The dashboard in a real Chromium, driven by Playwright (playwright-core, never a
// downloaded browser). Run by crates/strongroom-cli/tests/dashboard.rs against a daemon it
// started on a repository it seeded:
//   hotel  backed up, verified, drilled, checked, pruned: meets every objective
//   inn    its verify failed (a configured check does not hold)
//   motel  its only backup is three days old (stale)
// Users: ann (operator) and bob (viewer), both with password $DASHBOARD_PASSWORD.
// Environment: DASHBOARD_URL, PLAYWRIGHT_CORE (path to playwright-core's index.mjs),
// CHROMIUM (the browser binary), SCREENSHOTS (a directory for the PNGs).
// Every wait is for something on the page, never for time; exits 1 with the failed
// assertion.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const { DASHBOARD_URL: url, PLAYWRIGHT_CORE, CHROMIUM, SCREENSHOTS, DASHBOARD_PASSWORD: password } = process.env;
const { chromium } = await import(PLAYWRIGHT_CORE);

const profile = mkdtempSync(join(tmpdir(), 'strongroom-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 900 },
  colorScheme: 'light',
});
const page = context.pages()[0] || await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
// The refusals the test asks for are logged as failed loads (401, 403, 409): expected.
page.on('console', (m) => {
  if (m.type() === 'error' && !/status of 40[139]/.test(m.text())) problems.push(`console: ${m.text()}`);
});
// Nothing may be fetched from anywhere but the daemon.
page.on('request', (r) => {
  if (!r.url().startsWith(url) && !r.url().startsWith('data:')) problems.push(`fetched ${r.url()}`);
});

const steps = [];
async function step(name, f) {
  const t = Date.now();
  await f();
  steps.push(`${name}: ${Date.now() - t} ms`);
}
const text = (sel) => page.locator(sel).innerText();
const WAIT = { timeout: 30000 };

// Reloads the journal until some (or, with `every`, every) row shows `needle`.
async function journalUntil(needle, every, what) {
  await page.waitForFunction(async ([n, all]) => {
    await loadJournal(); // eslint-disable-line no-undef
    const rows = [...document.querySelectorAll('#journal-rows tr')].map((r) => r.innerText);
    return rows.length > 0 && (all ? rows.every((r) => r.includes(n)) : rows.some((r) => r.includes(n)));
  }, [needle, every], { polling: 250, ...WAIT }).catch((e) => {
    throw new Error(`the journal never showed ${what}: ${e.message}`);
  });
}

try {
  await step('overview', async () => {
    await page.goto(url);
    await page.locator('#sources [data-source] .pill').first().waitFor(WAIT);
    const cards = page.locator('#sources [data-source]');
    assert.equal(await cards.count(), 3, 'three sources on the overview');
    const level = (s) => page.locator(`#sources [data-source="${s}"]`).getAttribute('data-level');
    assert.equal(await level('hotel'), 'ok', 'hotel meets its objectives');
    assert.equal(await level('inn'), 'critical');
    assert.equal(await level('motel'), 'critical');
    assert.match(await text('#overall'), /2 of 3 sources need attention: inn \(critical\), motel \(critical\)/);
    assert.match(await text('#sources [data-source="hotel"] .sentence'), /Meets every objective: newest full snapshot/);
    // What runs next, and the checklist as status ticks it.
    assert.match(await text('#upcoming'), /hotel\/full/);
    assert.equal(await page.locator('#checklist [data-source="hotel"] [data-done="false"]').count(), 0,
      'every item of hotel\'s checklist is ticked');
    assert.ok(await page.locator('#checklist [data-source="motel"] [data-done="false"]').count() > 0);
    assert.match(await text('#running'), /Nothing runs now/);
    // The journal lists failures first.
    await page.locator('#journal-rows tr').first().waitFor(WAIT);
    assert.equal(await page.locator('#journal-rows tr').first().getAttribute('class'), 'failed');
    assert.match(await text('#journal-rows tr:first-child'), /verify failed: .*no mallory/);
    if (SCREENSHOTS) await page.screenshot({ path: join(SCREENSHOTS, 'dashboard-overview.png'), fullPage: true });
  });

  await step('a failing source', async () => {
    const motel = page.locator('#sources [data-source="motel"]');
    const stale = motel.locator('[data-check="backup.full"]');
    assert.equal(await stale.getAttribute('data-level'), 'critical', 'a stale backup is critical');
    assert.match(await stale.innerText(), /is 3d old; one is expected every 24h/);
    const verify = page.locator('#sources [data-source="inn"] [data-check="verify"]');
    assert.equal(await verify.getAttribute('data-level'), 'critical', 'a failed verify is critical');
    assert.match(await page.locator('#sources [data-source="inn"] .sentence').innerText(),
      /Recovery is at risk: the last verify .* failed/);
    // Failures only.
    await page.locator('#journal-filter input[name=failed]').check();
    await journalUntil('✗', true, 'failures only');
    await page.locator('#journal-filter input[name=failed]').uncheck();
    await page.goto(`${url}#/source/inn`);
    await page.locator('#events li.failed').first().waitFor(WAIT);
    assert.match(await text('#events li.failed'), /verify failed/);
  });

  await step('one source\'s timeline', async () => {
    await page.goto(`${url}#/source/hotel`);
    await page.locator('#events li').first().waitFor(WAIT);
    const jobs = await page.locator('#events li').evaluateAll((l) => l.map((e) => e.dataset.job));
    for (const j of ['backup', 'verify', 'drill']) assert.ok(jobs.includes(j), `the timeline shows a ${j}: ${jobs}`);
    assert.ok(await page.locator('svg.timeline circle.ev-ok').count() >= 4, 'events drawn on the timeline');
    for (const id of ['size', 'added', 'duration']) {
      assert.equal(await page.locator(`[data-plot="${id}"] svg polyline`).count(), 1, `a ${id} plot`);
    }
    assert.match(await text('[data-plot="wal"]'), /No WAL archive/);
    assert.match(await text('#drill'), /the recovery worked and every check passed/);
    assert.match(await text('[data-figure^="RTO"]'), /objective 1\.0 h: met/);
    assert.match(await text('[data-figure^="RPO"]'), /met/);
    // The journal below follows the source.
    await journalUntil('hotel', true, 'hotel\'s records only');
    if (SCREENSHOTS) await page.screenshot({ path: join(SCREENSHOTS, 'dashboard-source.png'), fullPage: true });
  });

  await step('a refused action without a login', async () => {
    await page.locator('#run-backup').click();
    await page.locator('#notice.refused').waitFor(WAIT);
    assert.match(await text('#notice'), /Log in as an operator to start a backup or a drill/);
    // A wrong password says no more than that.
    await page.locator('#login-open').click();
    await page.fill('#login-form input[name=name]', 'ann');
    await page.fill('#login-form input[name=password]', 'not the password');
    await page.locator('#login-form button[type=submit]').click();
    await page.locator('#login-error:has-text("wrong")').waitFor(WAIT);
    assert.equal(await text('#login-error'), 'The name or the password is wrong; try again');
    // A viewer may look but not act.
    await page.fill('#login-form input[name=name]', 'bob');
    await page.fill('#login-form input[name=password]', password);
    await page.locator('#login-form button[type=submit]').click();
    await page.locator('#whoami').waitFor(WAIT);
    assert.equal(await text('#whoami'), 'bob (viewer)');
    await page.locator('#run-drill').click();
    await page.locator('#notice.refused:has-text("may look")').waitFor(WAIT);
    assert.match(await text('#notice'), /Only an operator may start a job from here: bob may look but not act/);
    // A POST without the session's CSRF token is refused.
    const forged = await page.evaluate(async () => (await fetch('/api/run', {
      method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'source=hotel&job=full',
    })).status);
    assert.equal(forged, 403);
    await page.locator('#logout').click();
    await page.locator('#login-open').waitFor(WAIT);
  });

  await step('backup now, and its journal record', async () => {
    await page.locator('#login-open').click();
    await page.fill('#login-form input[name=name]', 'ann');
    await page.fill('#login-form input[name=password]', password);
    await page.locator('#login-form button[type=submit]').click();
    await page.locator('#whoami:has-text("ann (operator)")').waitFor(WAIT);
    // Another site's page cannot act, even with the session's cookie and token.
    const cookie = (await context.cookies(url)).map((c) => `${c.name}=${c.value}`).join('; ');
    const csrf = await page.evaluate(() => state.session.csrf); // eslint-disable-line no-undef
    const foreign = await fetch(`${url}api/run`, {
      method: 'POST',
      headers: { Origin: 'http://evil.example', Cookie: cookie, 'X-CSRF-Token': csrf,
        'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'source=hotel&job=full',
    });
    assert.equal(foreign.status, 403, 'a POST from another origin is refused');
    assert.match((await foreign.json()).error, /another site/);
    const backups = () => page.locator('#events li[data-job="backup"]').count();
    const before = await backups();
    await page.locator('#run-backup').click();
    await page.locator('#notice.good:has-text("has started")').waitFor(WAIT);
    assert.match(await text('#notice'), /The full backup of hotel has started/);
    await journalUntil('dashboard: full backup asked for by ann', false, 'the audit record');
    await journalUntil('dashboard: login by ann failed', false, 'the failed login');
    // The backup itself ends and shows on the timeline.
    await page.waitForFunction(async (n) => {
      await refreshSource(); // eslint-disable-line no-undef
      return document.querySelectorAll('#events li[data-job="backup"]').length > n;
    }, before, { polling: 250, ...WAIT });
  });
  assert.deepEqual(problems, [], 'no script error, nothing fetched from elsewhere');
  console.log(steps.join('\n'));
} catch (e) {
  console.error(`dashboard test failed: ${e.stack || e}`);
  console.error(steps.join('\n'));
  if (SCREENSHOTS) await page.screenshot({ path: join(SCREENSHOTS, 'failure.png'), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

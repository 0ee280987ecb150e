// Drives partway's upload page in headless Chromium (playwright-core, the system's
// Chromium). Run by tests/it/upload_page.rs, which starts the service, mints the tokens,
// writes the files and checks what storage holds afterwards; this script only does what
// a person does in the browser and reports what the page showed.
//
//   node tests/browser/upload_page.mjs CONFIG.json
//
// CONFIG: {"base": "http://127.0.0.1:PORT", "chromium": "/usr/bin/chromium",
//          "playwright": "/…/node_modules", "scenario": {"kind": …, …}}
// The last line on stdout is the result as JSON. Every wait polls with a deadline.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const require = createRequire(path.join(config.playwright, 'noop.js'));
const { chromium } = require('playwright-core');

const DEADLINE_MS = config.deadlineMs || 180_000;

async function until(what, check, ms = DEADLINE_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const rowOf = (page, name) => page.locator('li.file', { has: page.locator('.name', { hasText: name }) }).last();

async function attr(row, name) {
  return row.getAttribute(`data-${name}`);
}

async function waitStatus(row, wanted, ms) {
  return until(`status ${wanted}`, async () => {
    const status = await attr(row, 'status');
    if (status === 'error') {
      const message = await row.locator('.message').textContent();
      throw new Error(`upload failed: ${message}`);
    }
    return wanted.includes(status) ? status : null;
  }, ms);
}

async function uploadedFraction(row) {
  const up = Number(await attr(row, 'uploaded-parts'));
  const total = Number(await attr(row, 'total-parts'));
  return total ? up / total : 0;
}

/// Storage's bandwidth as the browser sees it, so that an upload lasts long enough to be
/// interrupted (Chromium's own network emulation).
async function throttle(page, bytesPerSecond) {
  if (!bytesPerSecond) return;
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  });
}

async function openPage(browser, token, viewport) {
  const context = await browser.newContext({ viewport: viewport || { width: 1024, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  await page.goto(`${config.base}/upload#token=${token}`);
  return { context, page, problems };
}

const scenarios = {
  // Several files at once; a screenshot mid-upload; every file ends completed.
  async upload(browser, s) {
    const { page, problems } = await openPage(browser, s.token, s.viewport);
    await throttle(page, s.throttle);
    let refusedPuts = 0;
    page.on('response', (r) => {
      if (r.request().method() === 'PUT' && r.status() === 403) refusedPuts += 1;
    });
    const started = Date.now();
    await page.setInputFiles('#file-input', s.files);
    const names = s.files.map((f) => path.basename(f));
    const largest = rowOf(page, names[s.largest || 0]);
    let screenshot = null;
    if (s.screenshot) {
      await until('the large file a quarter done', async () => (await uploadedFraction(largest)) >= 0.25);
      await page.screenshot({ path: s.screenshot, fullPage: true });
      screenshot = s.screenshot;
    }
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    const files = [];
    for (const name of names) {
      const row = rowOf(page, name);
      await waitStatus(row, ['completed']);
      files.push({
        name,
        resumeToken: await attr(row, 'resume-token'),
        link: await row.locator('.result-link').getAttribute('href'),
      });
    }
    return { elapsedMs: Date.now() - started, refusedPuts, files, screenshot, overflow, problems };
  },

  // A reload at ~40%: the same file picked again resumes its upload; only the missing
  // parts are PUT to storage.
  async reload(browser, s) {
    const { page, problems } = await openPage(browser, s.token);
    await throttle(page, s.throttle);
    const name = path.basename(s.file);
    await page.setInputFiles('#file-input', s.file);
    let row = rowOf(page, name);
    await until('40% of the parts', async () => (await uploadedFraction(row)) >= (s.at || 0.4));
    const before = { token: await attr(row, 'resume-token'), uploaded: Number(await attr(row, 'uploaded-parts')) };
    await page.reload();
    const puts = [];
    page.on('request', (r) => {
      if (r.method() === 'PUT' && r.url().startsWith(s.storage)) puts.push(r.url());
    });
    await page.setInputFiles('#file-input', s.file);
    row = rowOf(page, name);
    await waitStatus(row, ['completed']);
    return {
      before,
      total: Number(await attr(row, 'total-parts')),
      remaining: Number(await attr(row, 'remaining')),
      resumed: (await attr(row, 'resumed')) === 'true',
      resumeToken: await attr(row, 'resume-token'),
      puts: puts.length,
      problems,
    };
  },

  // Pause (nothing is sent while paused), resume, complete.
  async pauseResume(browser, s) {
    const { page, problems } = await openPage(browser, s.token);
    await throttle(page, s.throttle);
    const name = path.basename(s.file);
    await page.setInputFiles('#file-input', s.file);
    const row = rowOf(page, name);
    await until('a part', async () => Number(await attr(row, 'uploaded-parts')) >= 1);
    await row.getByRole('button', { name: `Pause ${name}` }).click();
    await waitStatus(row, ['paused']);
    const token = await attr(row, 'resume-token');
    const doc = await (await fetch(`${config.base}/api/v1/upload/multipart/${token}`, {
      headers: { authorization: `Bearer ${s.token}` },
    })).json();
    let putsWhilePaused = 0;
    const count = (r) => { if (r.method() === 'PUT' && r.url().startsWith(s.storage)) putsWhilePaused += 1; };
    page.on('request', count);
    const resumeButton = row.getByRole('button', { name: `Resume ${name}` });
    const focusable = await resumeButton.isVisible();
    page.off('request', count);
    await resumeButton.click();
    await waitStatus(row, ['completed']);
    return { pausedStatus: doc.status, putsWhilePaused, focusable, resumeToken: token, problems };
  },

  // Cancel aborts the upload.
  async cancel(browser, s) {
    const { page, problems } = await openPage(browser, s.token);
    await throttle(page, s.throttle);
    const name = path.basename(s.file);
    await page.setInputFiles('#file-input', s.file);
    const row = rowOf(page, name);
    await until('a part', async () => Number(await attr(row, 'uploaded-parts')) >= 1);
    // By keyboard: focus the button, press Enter.
    await row.getByRole('button', { name: `Cancel ${name}` }).focus();
    await page.keyboard.press('Enter');
    await waitStatus(row, ['cancelled']);
    return { resumeToken: await attr(row, 'resume-token'), problems };
  },

  // A file the page cannot upload (too large for the token, storage without CORS, …):
  // its row says why.
  async rowError(browser, s) {
    const { page, problems } = await openPage(browser, s.token);
    await page.setInputFiles('#file-input', s.file);
    const row = rowOf(page, path.basename(s.file));
    await until('the error', async () => (await attr(row, 'status')) === 'error');
    return { message: await row.locator('.message').textContent(), problems };
  },

  // A token the API refuses: the page says why.
  async refused(browser, s) {
    const { page, problems } = await openPage(browser, s.token);
    await page.setInputFiles('#file-input', s.file);
    const banner = page.locator('#banner');
    await until('the banner', () => banner.isVisible());
    const row = rowOf(page, path.basename(s.file));
    return { banner: await banner.textContent(), status: await attr(row, 'status'), problems };
  },
};

const browser = await chromium.launch({
  executablePath: config.chromium,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
  headless: true,
});
let result;
try {
  const run = scenarios[config.scenario.kind];
  if (!run) throw new Error(`unknown scenario ${config.scenario.kind}`);
  result = { ok: true, ...(await run(browser, config.scenario)) };
} catch (e) {
  result = { ok: false, error: String(e && e.stack || e) };
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);

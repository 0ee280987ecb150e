// Runs the published Uppy clients (@uppy/core + @uppy/aws-s3 6.3.1 and 5.1.0, unchanged,
// bundled here with esbuild) in headless Chromium against partway's Companion routes.
// Run by tests/it/uppy_browser.rs, which starts the service, mints the tokens and checks
// what storage holds afterwards (each object's SHA-256).
//
//   node tests/browser/uppy.mjs CONFIG.json
//
// CONFIG: {"base", "chromium", "playwright", "uppy6", "uppy5", "scenarios": [{name,
//          version: 6|5, token, size, multipart, expectError?}]}
// The page is served from its own loopback origin (so every call is cross-origin, as on
// a real site). The last line on stdout is the result as JSON.
import { createRequire } from 'node:module';
import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { chromium } = createRequire(path.join(config.playwright, 'noop.js'))('playwright-core');
const esbuild = createRequire(path.join(config.uppy6, 'noop.js'))('esbuild');

async function bundle(dir, suffix) {
  const work = mkdtempSync(path.join(os.tmpdir(), 'uppy-entry-'));
  const entry = path.join(work, `entry${suffix}.js`);
  writeFileSync(entry, `import * as core from '@uppy/core';
import * as s3 from '@uppy/aws-s3';
window.Uppy${suffix} = core.default || core.Uppy;
window.AwsS3v${suffix} = s3.default || s3.AwsS3;
`);
  const out = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: 'iife',
    write: false,
    nodePaths: [dir],
    logLevel: 'silent',
  });
  return out.outputFiles[0].text;
}

const scripts = {
  '/uppy6.js': await bundle(config.uppy6, '6'),
  '/uppy5.js': await bundle(config.uppy5, '5'),
};
const server = createServer((req, res) => {
  if (scripts[req.url]) {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(scripts[req.url]);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><meta charset="utf-8"><script src="/uppy6.js"></script><script src="/uppy5.js"></script><p>uppy</p>');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({ executablePath: config.chromium, args: ['--no-sandbox'] });
const results = [];
let ok = true;
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error('pageerror', e));
  await page.goto(origin);
  for (const scenario of config.scenarios) {
    const started = Date.now();
    const result = await page.evaluate(async ({ base, s }) => {
      const data = new Uint8Array(s.size);
      for (let i = 0; i < data.length; i += 65536) {
        crypto.getRandomValues(data.subarray(i, Math.min(i + 65536, data.length)));
      }
      const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, '0')).join('');
      const sha256 = hex(await crypto.subtle.digest('SHA-256', data));
      const Uppy = s.version === 6 ? window.Uppy6 : window.Uppy5;
      const AwsS3 = s.version === 6 ? window.AwsS3v6 : window.AwsS3v5;
      const opts = s.version === 6
        ? { companionEndpoint: `${base}/uppy/${s.token}` }
        : { endpoint: `${base}/uppy`, headers: { 'x-api-key': s.token } };
      opts.shouldUseMultipart = () => s.multipart;
      const uppy = new Uppy({ autoProceed: false }).use(AwsS3, opts);
      const id = uppy.addFile({ name: s.name, type: 'application/octet-stream', data: new Blob([data]) });
      const out = await uppy.upload();
      const file = uppy.getFile(id);
      return {
        sha256,
        successful: (out?.successful || []).length,
        failed: (out?.failed || []).map((f) => String(f.error?.message || f.error)),
        uploadURL: file?.response?.uploadURL || null,
        uploadId: file?.s3Multipart?.uploadId || null,
      };
    }, { base: config.base, s: scenario });
    result.name = scenario.name;
    result.ms = Date.now() - started;
    const passed = scenario.expectError ? result.failed.length === 1 : result.successful === 1;
    result.passed = passed;
    ok = ok && passed;
    results.push(result);
  }
} catch (e) {
  ok = false;
  results.push({ error: String(e && e.stack || e) });
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify({ ok, results }));

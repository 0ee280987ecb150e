// Runs the published Uppy clients (@uppy/core + @uppy/aws-s3 6.3.1 and 5.1.0, unchanged,
// bundled here with esbuild) in headless Chromium against partway's Companion routes.
// Run by tests/it/uppy_browser.rs, which starts the service, mints the tokens and checks
// what storage holds afterwards (each object's SHA-256, the upload's status).
//
//   node tests/browser/uppy.mjs CONFIG.json
//
// CONFIG: {"base", "chromium", "playwright", "uppy6", "uppy5", "insecure"?, "scenarios": [
//          {name, kind?, version: 6|5, token, size, multipart, expectError?}]}
// kinds: "upload" (default), "resume" (stop after 2 parts, a new page resumes from the
// kept s3Multipart), "cancel" (remove the file after its first part), "retry" (6.x: one
// part PUT answers 403, then uppy.retryUpload()), "resign" (5.x: the first part PUT is
// held until its URL expired; 5.x signs it again).
// The page is served from its own loopback origin (every call is cross-origin, as on a
// real site); `insecure` turns off Chromium's CORS checks, for storage without CORS
// (moto). The last line on stdout is the result as JSON. Every wait has a deadline.
import { createRequire } from 'node:module';
import {
  readFileSync, mkdtempSync, writeFileSync, rmSync, openSync, writeSync, closeSync,
} from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { chromium } = createRequire(path.join(config.playwright, 'noop.js'))('playwright-core');
const esbuild = createRequire(path.join(config.uppy6, 'noop.js'))('esbuild');
const DEADLINE_MS = config.deadlineMs || 120_000;

async function bundle(dir, suffix) {
  const work = mkdtempSync(path.join(os.tmpdir(), 'uppy-entry-'));
  const entry = path.join(work, `entry${suffix}.js`);
  writeFileSync(entry, `import * as core from '@uppy/core';
import * as s3 from '@uppy/aws-s3';
window.Uppy${suffix} = core.default || core.Uppy;
window.AwsS3v${suffix} = s3.default || s3.AwsS3;
`);
  const out = await esbuild.build({
    entryPoints: [entry], bundle: true, format: 'iife', write: false, nodePaths: [dir], logLevel: 'silent',
  });
  return out.outputFiles[0].text;
}

// Runs in the page: helpers every scenario uses.
const HELPERS = `
window.makeData = (size, seed) => {
  const data = new Uint8Array(size);
  const words = new Uint32Array(data.buffer, 0, Math.floor(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; words[i] = x >>> 0; }
  for (let i = words.length * 4; i < size; i++) data[i] = i & 255;
  return data;
};
window.sha256hex = async (data) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', data))]
  .map((b) => b.toString(16).padStart(2, '0')).join('');
window.makeUppy = (s, base) => {
  const Uppy = s.version === 6 ? window.Uppy6 : window.Uppy5;
  const AwsS3 = s.version === 6 ? window.AwsS3v6 : window.AwsS3v5;
  const opts = s.version === 6
    ? { companionEndpoint: s.companionEndpoint || (base + '/uppy/' + s.token) }
    : { endpoint: base + '/uppy', headers: { 'x-api-key': s.token } };
  opts.shouldUseMultipart = () => s.multipart;
  return new Uppy({ autoProceed: false }).use(AwsS3, opts);
};
`;

const scripts = {
  '/uppy6.js': await bundle(config.uppy6, '6'),
  '/uppy5.js': await bundle(config.uppy5, '5'),
  '/helpers.js': HELPERS,
};
const server = createServer((req, res) => {
  if (scripts[req.url]) {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(scripts[req.url]);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><meta charset="utf-8"><script src="/uppy6.js"></script>'
    + '<script src="/uppy5.js"></script><script src="/helpers.js"></script><input type="file" id="f">');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;

async function until(what, check, ms = DEADLINE_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const isPartPut = (req, base) => req.method() === 'PUT' && !req.url().startsWith(base);
const isSign = (url) => /\/s3\/multipart\/[^/?]+\/\d+\?/.test(url);

// A file on disk of `size` pseudo-random bytes and its SHA-256 (files of 64 MiB and
// more are picked from disk, as a person would: a Blob that large built in the page
// breaks in Chromium's blob storage, ERR_BLOB_REFERENCED_BLOB_BROKEN).
function diskFile(size) {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'uppy-file-')), 'big.bin');
  const fd = openSync(file, 'w');
  const hash = createHash('sha256');
  for (let done = 0; done < size;) {
    const chunk = randomBytes(Math.min(8 << 20, size - done));
    writeSync(fd, chunk);
    hash.update(chunk);
    done += chunk.length;
  }
  closeSync(fd);
  return { file, sha256: hash.digest('hex') };
}

// One whole upload; returns what the page saw.
async function upload(page, s, base) {
  let onDisk = null;
  if (s.size >= 64 << 20) {
    onDisk = diskFile(s.size);
    await page.setInputFiles('#f', onDisk.file);
  }
  const r = await page.evaluate(async ({ s, base, onDisk }) => {
    let data;
    let sha256;
    if (onDisk) {
      data = document.getElementById('f').files[0];
      sha256 = onDisk.sha256;
    } else {
      const bytes = window.makeData(s.size, s.seed || 7);
      sha256 = await window.sha256hex(bytes);
      data = new Blob([bytes]);
    }
    const uppy = window.makeUppy(s, base);
    const id = uppy.addFile({ name: s.name, type: 'application/octet-stream', data });
    if (s.resumeFrom) uppy.setFileState(id, { s3Multipart: s.resumeFrom });
    const started = performance.now();
    const out = await uppy.upload();
    const uploadMs = Math.round(performance.now() - started);
    let failed = (out?.failed || []).map((f) => String(f.error?.message || f.error));
    let successful = (out?.successful || []).length;
    if (s.retry && failed.length === 1) {
      const again = await uppy.retryUpload(id);
      failed = (again?.failed || []).map((f) => String(f.error?.message || f.error));
      successful = (again?.successful || []).length;
    }
    const file = uppy.getFile(id);
    return { sha256, successful, failed, uploadMs, uploadURL: file?.response?.uploadURL || null };
  }, { s, base, onDisk });
  if (onDisk) rmSync(path.dirname(onDisk.file), { recursive: true, force: true });
  return r;
}

async function scenario(context, s) {
  const base = config.base;
  const pages = [];
  const page = await context.newPage();
  pages.push(page);
  page.on('pageerror', (e) => console.error('pageerror', e));
  const puts = [];
  const signs = [];
  const deletes = [];
  page.on('response', (res) => {
    if (res.request().method() === 'DELETE' && res.url().startsWith(base)) deletes.push(res.status());
  });
  const requestFailures = [];
  page.on('requestfailed', (req) => {
    requestFailures.push(`${req.method()} ${req.url().split('?')[0]}: ${req.failure()?.errorText}`);
  });
  page.on('request', (req) => {
    if (isPartPut(req, base)) puts.push(req.url());
    if (isSign(req.url())) signs.push(req.url());
  });
  await page.goto(origin);
  const kind = s.kind || 'upload';
  try {
    if (kind === 'upload') {
      const r = await upload(page, s, base);
      return { ...r, requestFailures, passed: s.expectError ? r.failed.length === 1 : r.successful === 1 };
    }
    if (kind === 'retry') {
      let refused = 0;
      await page.route((url) => !url.href.startsWith(base) && !url.href.startsWith(origin), async (route) => {
        if (route.request().method() === 'PUT' && refused === 0 && puts.length >= 2) {
          refused += 1;
          await route.fulfill({ status: 403, body: '<Error><Code>AccessDenied</Code><Message>denied</Message></Error>',
            headers: { 'access-control-allow-origin': '*', 'access-control-expose-headers': 'ETag' } });
          return;
        }
        await route.continue();
      });
      const r = await upload(page, { ...s, retry: true }, base);
      return { ...r, refused, puts: puts.length, passed: r.successful === 1 && refused === 1 };
    }
    if (kind === 'resign') {
      let held = 0;
      await page.route((url) => !url.href.startsWith(base) && !url.href.startsWith(origin), async (route) => {
        if (route.request().method() === 'PUT' && held === 0) {
          held += 1;
          await new Promise((r) => setTimeout(r, s.holdMs));
        }
        await route.continue();
      });
      const r = await upload(page, s, base);
      return { ...r, held, signs: signs.length, passed: r.successful === 1 && held === 1 };
    }
    if (kind === 'cancel') {
      const r = await page.evaluate(async ({ s, base }) => {
        const data = window.makeData(s.size, 3);
        const uppy = window.makeUppy(s, base);
        const id = uppy.addFile({ name: s.name, type: 'application/octet-stream', data: new Blob([data]) });
        let state = null;
        const removed = new Promise((resolve) => {
          uppy.on('s3-multipart:part-uploaded', () => {
            if (state) return;
            state = uppy.getFile(id).s3Multipart;
            uppy.removeFile(id);
            resolve();
          });
        });
        uppy.upload();
        await removed;
        return { s3Multipart: state };
      }, { s, base });
      await until('the DELETE', async () => deletes.length > 0);
      return { ...r, deletes, passed: Boolean(r.s3Multipart) && deletes[0] === 200 };
    }
    if (kind === 'resume') {
      // Page 1: stops (closes) after two parts; keeps s3Multipart as Golden Retriever would.
      const kept = await page.evaluate(async ({ s, base }) => {
        const data = window.makeData(s.size, 11);
        const uppy = window.makeUppy(s, base);
        const id = uppy.addFile({ name: s.name, type: 'application/octet-stream', data: new Blob([data]) });
        let parts = 0;
        const two = new Promise((resolve) => {
          uppy.on('s3-multipart:part-uploaded', () => {
            parts += 1;
            if (parts === 2) resolve(uppy.getFile(id).s3Multipart);
          });
        });
        uppy.upload();
        return two;
      }, { s, base });
      const firstPuts = puts.length;
      await page.close();
      // Page 2 (the "reload"): the same file, the kept state; only missing parts go.
      const second = await context.newPage();
      pages.push(second);
      const puts2 = [];
      let listed = null;
      second.on('request', (req) => { if (isPartPut(req, base)) puts2.push(req.url()); });
      second.on('response', async (res) => {
        if (res.request().method() === 'GET' && /\/s3\/multipart\/[^/?]+\?key=/.test(res.url())) {
          try { listed = (await res.json()).length; } catch { /* not JSON */ }
        }
      });
      await second.goto(origin);
      const r = await upload(second, { ...s, seed: 11, resumeFrom: kept }, base);
      const total = Math.ceil(s.size / (5 * 1024 * 1024));
      return {
        ...r, kept, firstPuts, secondPuts: puts2.length, listed, total,
        passed: r.successful === 1 && listed >= 2 && puts2.length === total - listed,
      };
    }
    throw new Error(`unknown kind ${kind}`);
  } finally {
    for (const p of pages) await p.close().catch(() => {});
  }
}

const args = ['--no-sandbox'];
if (config.insecure) args.push('--disable-web-security');
// A persistent profile: Chromium may page large Blobs to disk there (an incognito
// context keeps them in memory and breaks a 512 MiB one: ERR_BLOB_REFERENCED_BLOB_BROKEN).
const profile = mkdtempSync(path.join(os.tmpdir(), 'uppy-profile-'));
const browser = await chromium.launchPersistentContext(profile, { executablePath: config.chromium, args });
const results = [];
let ok = true;
try {
  for (const s of config.scenarios) {
    const started = Date.now();
    let result;
    try {
      let timer;
      const limit = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no result in ${DEADLINE_MS} ms`)), DEADLINE_MS);
      });
      result = await Promise.race([scenario(browser, s), limit]);
      clearTimeout(timer);
    } catch (e) {
      result = { passed: false, error: String((e && e.stack) || e) };
    }
    result.name = s.name;
    result.ms = Date.now() - started;
    ok = ok && result.passed;
    results.push(result);
  }
} finally {
  await browser.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify({ ok, results }));

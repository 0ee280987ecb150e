// partway's upload page (DESIGN §5). No dependencies, no build step: served as it is.
//
// The browser token comes from the URL fragment (#token=pwb_…, never sent to a server) or
// is pasted. Each file is uploaded in parts PUT straight to storage through presigned URLs,
// PARALLEL at once, each retried with backoff; an expired part URL (403) is replaced through
// resume. Each part is reported to partway as storage accepts it. The resume token of each
// file is kept in localStorage under the file's fingerprint (name, size, last modified), so
// picking the same file after a reload resumes the upload and sends only the missing parts.
'use strict';

const API = '/api/v1';
const PARALLEL = 4;
const MAX_ATTEMPTS = 6;
const STORE_PREFIX = 'partway.upload:';

const $ = (sel, root = document) => root.querySelector(sel);
const live = (text) => { $('#live').textContent = text; };

let token = null;

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      referrerPolicy: 'no-referrer',
    });
  } catch (e) {
    throw new HttpError(0, 'NETWORK', 'partway cannot be reached; check the connection');
  }
  let doc = null;
  try { doc = await res.json(); } catch (e) { doc = null; }
  if (!res.ok) {
    throw new HttpError(res.status, doc && doc.error, (doc && doc.message) || `HTTP ${res.status}`);
  }
  return { status: res.status, doc };
}

/// A token problem concerns every file: shown once, at the top.
function tokenProblem(err) {
  if (err.status !== 401) return false;
  const m = (err.message || '').toLowerCase();
  let text = 'This upload link is not valid. Ask the site for a new one.';
  if (m.includes('expired')) text = 'This upload link has expired. Ask the site for a new one.';
  else if (m.includes('revoked')) text = 'This upload link was revoked. Ask the site for a new one.';
  showBanner(text);
  return true;
}

function showBanner(text) {
  const b = $('#banner');
  b.textContent = text;
  b.hidden = false;
}

/// What a person should read for an error that concerns one file.
function fileMessage(err) {
  switch (err.code) {
    case 'INVALID_FILE_SIZE': return `This file is too large: ${err.message}`;
    case 'INVALID_CONTENT_TYPE': return `This type of file is not accepted: ${err.message}`;
    case 'QUOTA_EXCEEDED': return `No more uploads are allowed: ${err.message}`;
    case 'STORAGE_CORS': return err.message;
    default: return err.message || 'The upload failed.';
  }
}

function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function fmtDuration(s) {
  if (!Number.isFinite(s) || s < 0) return '';
  if (s < 60) return `${Math.ceil(s)} s left`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s left`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min left`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fingerprint(file) {
  return `${STORE_PREFIX}${file.name}:${file.size}:${file.lastModified}`;
}

function remembered(fp) {
  try { return JSON.parse(localStorage.getItem(fp) || 'null'); } catch (e) { return null; }
}

class Upload {
  constructor(file) {
    this.file = file;
    this.fp = fingerprint(file);
    this.status = 'waiting';
    this.resumeToken = null;
    this.parts = new Map(); // partNumber → part document (url, start, end, size)
    this.queue = [];
    this.done = new Set();
    this.inflight = new Map(); // partNumber → XMLHttpRequest
    this.loaded = new Map(); // partNumber → bytes sent so far
    this.refreshing = null;
    this.serverParts = null;
    this.samples = [];
    this.events = null;
    this.poller = null;
    this.render();
  }

  render() {
    const row = $('#file-row').content.firstElementChild.cloneNode(true);
    this.row = row;
    $('.name', row).textContent = this.file.name;
    const progress = $('progress', row);
    progress.setAttribute('aria-label', `Progress of ${this.file.name}`);
    $('.pause', row).setAttribute('aria-label', `Pause ${this.file.name}`);
    $('.resume', row).setAttribute('aria-label', `Resume ${this.file.name}`);
    $('.cancel', row).setAttribute('aria-label', `Cancel ${this.file.name}`);
    $('.pause', row).addEventListener('click', () => this.pause());
    $('.resume', row).addEventListener('click', () => this.resumeClicked());
    $('.cancel', row).addEventListener('click', () => this.cancel());
    $('#files').appendChild(row);
    this.setStatus('waiting', 'Waiting');
    this.tick();
  }

  setStatus(status, text) {
    this.status = status;
    this.row.dataset.status = status;
    $('.state', this.row).textContent = text;
    $('.pause', this.row).hidden = status !== 'uploading';
    $('.resume', this.row).hidden = status !== 'paused';
    $('.cancel', this.row).disabled = ['completing', 'completed', 'cancelled'].includes(status);
    live(`${this.file.name}: ${text}`);
  }

  fail(err) {
    if (this.status === 'cancelled') return;
    this.abortInflight();
    this.stopEvents();
    if (tokenProblem(err)) {
      this.setStatus('error', 'Stopped: the upload link is no longer valid');
    } else {
      this.setStatus('error', 'Failed');
    }
    const m = $('.message', this.row);
    m.textContent = err.status === 401 ? $('#banner').textContent : fileMessage(err);
    m.hidden = false;
  }

  sentBytes() {
    let n = 0;
    for (const p of this.done) n += this.parts.get(p) ? this.parts.get(p).size : 0;
    for (const v of this.loaded.values()) n += v;
    return n;
  }

  tick() {
    const sent = Math.min(this.sentBytes(), this.file.size);
    const now = performance.now();
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
    const [t0, b0] = this.samples[0];
    const rate = now > t0 ? ((sent - b0) * 1000) / (now - t0) : 0;
    $('progress', this.row).value = this.file.size ? sent / this.file.size : 0;
    $('.bytes', this.row).textContent = `${fmtBytes(sent)} of ${fmtBytes(this.file.size)}`;
    const active = this.status === 'uploading';
    $('.rate', this.row).textContent = active && rate > 0 ? `${fmtBytes(rate)}/s` : '';
    $('.eta', this.row).textContent = active && rate > 0 ? fmtDuration((this.file.size - sent) / rate) : '';
    const total = this.parts.size || this.totalParts || 0;
    const uploaded = this.serverParts == null ? this.done.size : Math.max(this.serverParts, 0);
    if (total) {
      $('.parts', this.row).textContent = `${uploaded} of ${total} parts`;
      this.row.dataset.uploadedParts = String(uploaded);
      this.row.dataset.totalParts = String(total);
    }
  }

  async start() {
    this.setStatus('starting', 'Starting');
    this.timer = setInterval(() => this.tick(), 500);
    try {
      const saved = remembered(this.fp);
      if (saved && saved.resumeToken) {
        try {
          this.resumeToken = saved.resumeToken;
          await this.reconcile();
          this.row.dataset.resumed = 'true';
          this.row.dataset.resumeToken = this.resumeToken;
          return await this.run();
        } catch (err) {
          // Not this token's, finished, aborted or expired: start again.
          if (![404, 409, 410].includes(err.status)) throw err;
          localStorage.removeItem(this.fp);
          this.resumeToken = null;
        }
      }
      const body = {
        filename: this.file.name,
        fileSize: this.file.size,
        contentType: this.file.type || 'application/octet-stream',
      };
      const { status, doc } = await api('POST', '/upload/multipart/init?wait=30', body);
      this.resumeToken = doc.resumeToken;
      this.row.dataset.resumeToken = this.resumeToken;
      localStorage.setItem(this.fp, JSON.stringify({ resumeToken: doc.resumeToken, at: Date.now() }));
      if (status === 200) {
        this.totalParts = doc.totalParts;
        for (const p of doc.partUrls) this.parts.set(p.partNumber, p);
        this.queue = doc.partUrls.map((p) => p.partNumber);
        this.row.dataset.remaining = String(this.queue.length);
      } else {
        await this.waitActive();
        await this.reconcile();
      }
      await this.run();
    } catch (err) {
      this.fail(err);
    }
  }

  /// An accepted init whose job has not finished: poll until the upload takes parts.
  async waitActive() {
    for (let i = 0; ; i += 1) {
      const { doc } = await api('GET', `/upload/multipart/${this.resumeToken}`);
      if (doc.status === 'active' || doc.status === 'paused') return;
      if (!['initiating'].includes(doc.status)) {
        throw new HttpError(409, 'UPLOAD_NOT_READY', `the upload is ${doc.status}`);
      }
      await sleep(Math.min(250 * (i + 1), 2000));
    }
  }

  /// Resume: storage's list of parts decides what is done; every missing part gets a
  /// fresh URL.
  async reconcile() {
    let { status, doc } = await api('POST', '/upload/multipart/resume?wait=30', { resumeToken: this.resumeToken });
    if (status === 202) {
      await this.waitActive();
      ({ status, doc } = await api('POST', '/upload/multipart/resume?wait=30', { resumeToken: this.resumeToken }));
      if (status !== 200) throw new HttpError(503, 'SERVICE_UNAVAILABLE', 'partway is busy; try again shortly');
    }
    this.totalParts = doc.totalParts;
    this.done = new Set(doc.uploadedParts.map((p) => p.partNumber));
    for (const p of doc.uploadedParts) {
      this.parts.set(p.partNumber, { partNumber: p.partNumber, size: p.size });
    }
    for (const p of doc.remainingParts) this.parts.set(p.partNumber, p);
    this.queue = doc.remainingParts.map((p) => p.partNumber).filter((n) => !this.inflight.has(n));
    this.row.dataset.remaining = String(doc.remainingParts.length);
  }

  /// New URLs for the parts still missing (one resume for every part that needs one).
  refreshUrls() {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        const { doc } = await api('POST', '/upload/multipart/resume?wait=30', { resumeToken: this.resumeToken });
        for (const p of doc.remainingParts || []) this.parts.set(p.partNumber, p);
      })().finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  async run() {
    if (this.status === 'cancelled' || this.status === 'paused') return;
    this.setStatus('uploading', 'Uploading');
    this.followEvents();
    const workers = [];
    for (let i = 0; i < PARALLEL; i += 1) workers.push(this.worker());
    const results = await Promise.allSettled(workers);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (this.status !== 'uploading') return;
    if (this.done.size < this.totalParts) return;
    await this.complete();
  }

  async worker() {
    while (this.status === 'uploading' && this.queue.length) {
      const n = this.queue.shift();
      try {
        await this.sendPart(n);
      } catch (err) {
        if (err.name === 'AbortError' || this.status !== 'uploading') {
          if (!this.done.has(n) && !this.queue.includes(n)) this.queue.unshift(n);
          return;
        }
        throw err;
      }
    }
  }

  async sendPart(n) {
    for (let attempt = 1; ; attempt += 1) {
      const part = this.parts.get(n);
      const blob = this.file.slice(part.start, part.end + 1);
      try {
        const etag = await this.put(n, part.url, blob);
        this.loaded.delete(n);
        this.done.add(n);
        await api('PUT', `/upload/multipart/${this.resumeToken}/parts/${n}`, { etag, size: blob.size });
        return;
      } catch (err) {
        this.loaded.delete(n);
        if (err.name === 'AbortError' || err.fatal) throw err;
        if (err instanceof HttpError && err.status !== 0 && !err.storage) throw err;
        if (attempt >= MAX_ATTEMPTS) {
          if (err.status === 0) {
            throw new HttpError(0, 'STORAGE_CORS',
              'Storage did not accept the browser\'s request. Its CORS rules may not allow this page, or it cannot be reached.');
          }
          throw err;
        }
        // An expired part URL: a fresh one through resume.
        if (err.status === 403) await this.refreshUrls();
        await sleep(Math.min(500 * 2 ** (attempt - 1), 8000) * (0.75 + Math.random() / 2));
        if (this.status !== 'uploading') {
          const abort = new Error('paused');
          abort.name = 'AbortError';
          throw abort;
        }
      }
    }
  }

  /// One part's PUT to storage (XHR: it reports upload progress); its ETag.
  put(n, url, blob) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      this.inflight.set(n, xhr);
      xhr.open('PUT', url);
      xhr.upload.onprogress = (e) => { this.loaded.set(n, e.loaded); };
      xhr.onload = () => {
        this.inflight.delete(n);
        const etag = xhr.getResponseHeader('ETag');
        if (xhr.status >= 200 && xhr.status < 300 && etag) {
          resolve(etag);
        } else if (xhr.status >= 200 && xhr.status < 300) {
          // Storage took the part but its CORS rules hide the ETag: retrying cannot help.
          const err = new HttpError(0, 'STORAGE_CORS', 'Storage accepted the part but does not let this page read its ETag: the bucket\'s CORS rules must allow this page\'s origin and expose the ETag header (see the README).');
          err.storage = true;
          err.fatal = true;
          reject(err);
        } else {
          const err = new HttpError(xhr.status, 'STORAGE', `storage answered ${xhr.status}`);
          err.storage = true;
          reject(err);
        }
      };
      xhr.onerror = () => {
        this.inflight.delete(n);
        const err = new HttpError(0, 'STORAGE', 'storage cannot be reached');
        err.storage = true;
        reject(err);
      };
      xhr.onabort = () => {
        this.inflight.delete(n);
        const err = new Error('aborted');
        err.name = 'AbortError';
        reject(err);
      };
      xhr.send(blob);
    });
  }

  abortInflight() {
    for (const xhr of [...this.inflight.values()]) xhr.abort();
    this.inflight.clear();
    this.loaded.clear();
  }

  async complete() {
    this.setStatus('completing', 'Finishing');
    const { status, doc } = await api('POST', '/upload/multipart/complete?wait=60', { resumeToken: this.resumeToken });
    if (status !== 200 || doc.status !== 'completed') {
      throw new HttpError(503, 'SERVICE_UNAVAILABLE', 'storage has not finished the file yet; pick it again to retry');
    }
    localStorage.removeItem(this.fp);
    this.finish();
    this.serverParts = doc.totalParts;
    this.setStatus('completed', 'Uploaded');
    const link = $('.result-link', this.row);
    link.href = doc.downloadUrl || doc.url;
    link.textContent = 'Download the uploaded file';
    $('.result', this.row).hidden = false;
  }

  finish() {
    clearInterval(this.timer);
    this.stopEvents();
    this.tick();
  }

  async pause() {
    if (this.status !== 'uploading') return;
    this.setStatus('pausing', 'Pausing');
    this.abortInflight();
    try {
      await api('POST', '/upload/multipart/pause', { resumeToken: this.resumeToken });
      this.setStatus('paused', 'Paused');
    } catch (err) {
      this.fail(err);
    }
  }

  async resumeClicked() {
    if (this.status !== 'paused') return;
    this.setStatus('starting', 'Resuming');
    try {
      await this.reconcile();
      await this.run();
    } catch (err) {
      this.fail(err);
    }
  }

  async cancel() {
    if (['completing', 'completed', 'cancelled'].includes(this.status)) return;
    const had = this.resumeToken;
    this.setStatus('cancelled', 'Cancelling');
    this.abortInflight();
    this.queue = [];
    localStorage.removeItem(this.fp);
    if (had) {
      try {
        await api('POST', '/upload/multipart/abort?wait=30', { resumeToken: had });
      } catch (err) {
        if (err.status !== 404) {
          $('.message', this.row).textContent = fileMessage(err);
          $('.message', this.row).hidden = false;
        }
      }
    }
    this.finish();
    this.setStatus('cancelled', 'Cancelled');
  }

  /// The upload's event stream drives the part count; polling when it fails.
  followEvents() {
    if (this.events || this.poller || !this.resumeToken) return;
    const url = `${API}/upload/multipart/${this.resumeToken}/events?access_token=${encodeURIComponent(token)}`;
    const apply = (doc) => {
      if (doc && doc.progress && typeof doc.progress.uploaded === 'number') {
        this.serverParts = doc.progress.uploaded;
      }
    };
    try {
      this.events = new EventSource(url);
      this.events.onmessage = (e) => {
        try { apply(JSON.parse(e.data)); } catch (err) { /* a partial document: ignore */ }
      };
      this.events.onerror = () => {
        this.stopEvents();
        if (['uploading', 'paused', 'starting'].includes(this.status)) this.poll(apply);
      };
    } catch (err) {
      this.poll(apply);
    }
  }

  poll(apply) {
    if (this.poller) return;
    this.poller = setInterval(async () => {
      if (!['uploading', 'paused', 'starting'].includes(this.status)) { this.stopEvents(); return; }
      try {
        const { doc } = await api('GET', `/upload/multipart/${this.resumeToken}`);
        apply(doc);
      } catch (err) { /* the next poll tries again */ }
    }, 2000);
  }

  stopEvents() {
    if (this.events) { this.events.close(); this.events = null; }
    if (this.poller) { clearInterval(this.poller); this.poller = null; }
  }
}

function addFiles(list) {
  for (const file of list) {
    const upload = new Upload(file);
    upload.start();
  }
}

function readToken() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const t = params.get('token');
  return t && t.trim() ? t.trim() : null;
}

function ready() {
  $('#token-form').hidden = true;
  $('#picker').hidden = false;
  const input = $('#file-input');
  input.addEventListener('change', () => {
    addFiles([...input.files]);
    input.value = '';
  });
  const drop = $('#drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer && e.dataTransfer.files) addFiles([...e.dataTransfer.files]);
  });
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', (e) => e.preventDefault());
}

function main() {
  token = readToken();
  if (token) {
    ready();
    return;
  }
  const form = $('#token-form');
  form.hidden = false;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('#token-input').value.trim();
    if (!value) return;
    token = value;
    // In the fragment only: it never reaches a server; a reload keeps it.
    history.replaceState(null, '', `#token=${encodeURIComponent(value)}`);
    ready();
  });
}

main();

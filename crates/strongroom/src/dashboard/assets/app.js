// strongroom's dashboard: draws what the daemon's JSON routes say. No library, no CDN:
// elements are made with el(), plots are hand-drawn SVG. Text from the server is always
// set as text, never as HTML.
'use strict';

const state = {
  status: null, daemon: null, session: null, source: null, sourceData: null,
  journal: { offset: 0, limit: 50, total: 0 },
};
const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: 'same-origin' });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  return { ok: r.ok, status: r.status, body };
}

async function post(url, fields) {
  const r = await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: {
      'Content-Type': 'application/x-www-form-urlencoded',
      'X-CSRF-Token': state.session ? state.session.csrf : '',
    },
    body: new URLSearchParams(fields || {}),
  });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  return { ok: r.ok, status: r.status, body };
}

// ---- words -------------------------------------------------------------------------

function ago(ts) {
  if (!ts) return 'never';
  const s = (Date.now() - Date.parse(ts)) / 1000;
  const a = Math.abs(s);
  const w = a < 90 ? `${Math.round(a)} s` : a < 5400 ? `${Math.round(a / 60)} min`
    : a < 172800 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} days`;
  return s >= 0 ? `${w} ago` : `in ${w}`;
}

function when(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function bytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${u[i]}`;
}

function secs(s) {
  if (s < 60) return `${s.toFixed(s < 1 ? 2 : s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

const LEVEL_WORD = { ok: 'OK', warning: 'Warning', critical: 'Critical' };

function levelSentence(src) {
  const bad = src.checks.filter((c) => c.level !== 'ok');
  if (bad.length === 0) {
    const b = src.checks.find((c) => c.name.startsWith('backup.'));
    return `Meets every objective${b ? `: ${b.detail}` : ''}.`;
  }
  const worst = bad.find((c) => c.level === 'critical') || bad[0];
  const more = bad.length > 1 ? ` ${bad.length - 1} more to look at below.` : '';
  return `${worst.level === 'critical' ? 'Recovery is at risk' : 'Needs attention'}: ${worst.detail}.${more}`;
}

// Checks that say how fresh the source's recovery points are: always shown.
const FRESHNESS = /^(backup\.|wal|verify|drill|check$|copy|rpo)/;

function pill(level) {
  return el('span', { class: `pill lvl-${level}` }, LEVEL_WORD[level] || level);
}

// ---- notices -----------------------------------------------------------------------

function notice(text, good) {
  const n = $('notice');
  n.textContent = text;
  n.className = `notice ${good ? 'good' : 'refused'}`;
  n.hidden = false;
}

// ---- session -----------------------------------------------------------------------

async function loadSession() {
  const r = await getJSON('/api/session');
  if (r.ok) state.session = r.body;
  drawAuth();
}

function drawAuth() {
  const a = $('auth');
  a.replaceChildren();
  const s = state.session;
  if (!s) return;
  if (s.user) {
    a.append(el('span', { id: 'whoami' }, `${s.user} (${s.role})`),
      el('button', { type: 'button', id: 'logout', onclick: logout }, 'Log out'));
  } else if (s.logins) {
    a.append(el('button', { type: 'button', id: 'login-open', onclick: () => $('login').showModal() }, 'Log in'));
  } else {
    a.append(el('span', { class: 'muted' }, 'Read-only: no [[daemon.users]]'));
  }
}

async function login(ev) {
  ev.preventDefault();
  const f = ev.target;
  const r = await post('/login', { name: f.elements['name'].value, password: f.elements['password'].value });
  if (r.ok) {
    state.session = { ...state.session, ...r.body };
    f.elements['password'].value = '';
    $('login-error').textContent = '';
    $('login').close();
    drawAuth();
    notice(`Logged in as ${r.body.user}.`, true);
  } else {
    $('login-error').textContent = sentence(r);
    if (r.status === 403) await loadSession();
  }
}

async function logout() {
  await post('/logout');
  await loadSession();
  notice('Logged out.', true);
}

function sentence(r) {
  const t = (r.body && (r.body.error || r.body.message)) || `The daemon answered ${r.status}.`;
  return t.charAt(0).toUpperCase() + t.slice(1);
}

// ---- overview ----------------------------------------------------------------------

function drawOverall() {
  const o = $('overall');
  const s = state.status;
  if (!s) return;
  const bad = s.sources.filter((x) => x.level !== 'ok');
  o.className = `overall lvl-${s.level}`;
  o.textContent = s.sources.length === 0 ? 'No source has been judged yet.'
    : bad.length === 0 ? `All ${s.sources.length} sources meet their objectives.`
    : `${bad.length} of ${s.sources.length} sources need attention: `
      + bad.map((x) => `${x.source} (${x.level})`).join(', ') + '.';
}

function checkItem(c) {
  return el('li', { 'data-check': c.name, 'data-level': c.level },
    el('span', { class: `dot lvl-${c.level}`, title: c.level }),
    el('span', { class: 'check-name' }, c.name),
    el('span', {}, c.detail));
}

// Every check, worst first; with `brief`, the checks that are ok and not about freshness
// fold away.
function checkList(checks, brief) {
  const order = { critical: 0, warning: 1, ok: 2 };
  const sorted = [...checks].sort((a, b) => order[a.level] - order[b.level]);
  const shown = brief ? sorted.filter((c) => c.level !== 'ok' || FRESHNESS.test(c.name)) : sorted;
  const folded = sorted.filter((c) => !shown.includes(c));
  const list = el('ul', { class: 'checks' }, shown.map(checkItem));
  if (folded.length === 0) return list;
  return el('div', {}, list, el('details', { class: 'folded' },
    el('summary', { class: 'muted' }, `${folded.length} more checks ok`),
    el('ul', { class: 'checks' }, folded.map(checkItem))));
}

function drawSources() {
  const box = $('sources');
  const s = state.status;
  if (!s) return;
  box.replaceChildren(...s.sources.map((src) => el('article', {
    class: `card lvl-${src.level}`, 'data-source': src.source, 'data-level': src.level,
  },
  el('h3', {}, el('a', { href: `#/source/${encodeURIComponent(src.source)}` }, src.source), pill(src.level)),
  el('p', { class: 'sentence' }, levelSentence(src)),
  checkList(src.checks, true))));
  if (s.sources.length === 0) box.append(el('p', { class: 'muted' }, 'No source yet: add [sources.NAME] to the config.'));
}

function drawChecklist() {
  const box = $('checklist');
  const s = state.status;
  if (!s) return;
  box.replaceChildren(...s.sources.map((src) => el('div', { class: 'checklist-source panel', 'data-source': src.source },
    el('h3', {}, src.source),
    el('ul', { class: 'plain' }, src.checklist.map((i) => el('li', { 'data-done': String(i.done) },
      el('span', { class: `tick ${i.done ? 'done' : 'open'}`, title: i.done ? 'done' : 'not done' }, i.done ? '✓' : '✗'),
      el('span', { class: 'muted' }, `${i.period}: `), i.item))))));
}

function drawDaemon() {
  const d = state.daemon;
  if (!d) return;
  const run = $('running');
  run.replaceChildren(...(d.running.length === 0 ? [el('li', { class: 'muted' }, 'Nothing runs now.')]
    : d.running.map((r) => el('li', { 'data-key': r.key },
      el('strong', {}, `${r.job} of ${r.source}`),
      ` since ${ago(r.started_at)}`,
      r.attempt ? ` (retry ${r.attempt})` : '',
      r.requested_by ? `, asked by ${r.requested_by}` : ''))));
  const seen = new Set();
  const rows = d.upcoming.filter((u) => !seen.has(u.key) && seen.add(u.key)).sort((a, b) => (a.next || '~').localeCompare(b.next || '~'));
  $('upcoming').tBodies[0].replaceChildren(...rows.map((u) => el('tr', { 'data-key': u.key },
    el('td', {}, u.key), el('td', { title: u.line }, u.next ? `${when(u.next)} (${ago(u.next)})` : u.line))));
  const f = [];
  if (d.judged_at) f.push(`Judged ${ago(d.judged_at)}.`);
  if (d.judging_error) f.push(`The last judgement failed: ${d.judging_error}.`);
  if (d.lists_read_at) f.push(`Lists read ${ago(d.lists_read_at)}: ${d.snapshots} snapshots, ${d.records} journal records.`);
  if (d.lists_error) f.push(`The repository could not be read: ${d.lists_error}.`);
  if (d.heartbeat) f.push(`Heartbeat pinged ${ago(d.heartbeat)}.`);
  $('footer').textContent = f.join(' ');
  const sel = document.querySelector('#journal-filter select[name=source]');
  if (d.sources && sel.options.length - 1 !== d.sources.length) {
    const v = sel.value;
    sel.replaceChildren(el('option', { value: '' }, 'all'), ...d.sources.map((n) => el('option', { value: n }, n)));
    sel.value = v;
  }
}

// ---- one source --------------------------------------------------------------------

function xScale(t0, t1, x0, x1) {
  const span = Math.max(t1 - t0, 1);
  return (t) => x0 + ((t - t0) / span) * (x1 - x0);
}

function plot(title, pts, fmt, opts) {
  const W = 400; const H = 170; const L = 66; const R = 12; const T = 12; const B = 26;
  const o = opts || {};
  const fig = el('figure', { 'data-plot': o.id || title }, el('figcaption', {}, title));
  if (pts.length === 0) {
    fig.append(el('p', { class: 'muted' }, o.empty || 'Nothing to plot yet.'));
    return fig;
  }
  const xs = pts.map((p) => p.x);
  const t0 = Math.min(...xs); const t1 = Math.max(...xs);
  const ymax = Math.max(...pts.map((p) => p.y), o.objective || 0) * 1.1 || 1;
  const x = xScale(t0, t1 === t0 ? t0 + 1 : t1, L, W - R);
  const y = (v) => H - B - (v / ymax) * (H - B - T);
  const s = svg('svg', { class: 'plot', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  s.append(svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    svg('text', { x: L - 6, y: T + 10, 'text-anchor': 'end' }, fmt(ymax)),
    svg('text', { x: L - 6, y: H - B, 'text-anchor': 'end' }, fmt(0)),
    svg('text', { x: L, y: H - 8 }, when(new Date(t0).toISOString())),
    svg('text', { x: W - R, y: H - 8, 'text-anchor': 'end' }, when(new Date(t1).toISOString())));
  if (o.objective) {
    s.append(svg('line', { class: 'objective', x1: L, x2: W - R, y1: y(o.objective), y2: y(o.objective) }),
      svg('text', { x: W - R, y: y(o.objective) - 4, 'text-anchor': 'end' }, `objective ${fmt(o.objective)}`));
  }
  if (o.bars) {
    const bw = Math.max(1, (W - R - L) / pts.length - 1);
    for (const p of pts) {
      s.append(svg('rect', { class: 'bar', x: x(p.x) - bw / 2, y: y(p.y), width: bw, height: H - B - y(p.y) },
        svg('title', {}, `${when(new Date(p.x).toISOString())}: ${fmt(p.y)}`)));
    }
  } else {
    s.append(svg('polyline', { class: 'line', points: pts.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ') }));
    if (pts.length <= 120) {
      for (const p of pts) {
        s.append(svg('circle', { class: 'pt', cx: x(p.x), cy: y(p.y), r: 3 },
          svg('title', {}, `${when(new Date(p.x).toISOString())}: ${fmt(p.y)}`)));
      }
    }
  }
  fig.append(s);
  return fig;
}

const JOB_LANES = ['backup', 'verify', 'drill', 'copy', 'wal', 'other'];
const LANE_OF = { 'wal push': 'wal', 'wal archive': 'wal' };

function timelineStrip(events) {
  const W = 1100; const lane = 22; const L = 80; const R = 12; const T = 8;
  const H = T + lane * JOB_LANES.length + 22;
  const s = svg('svg', { class: 'plot timeline', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Timeline' });
  if (events.length === 0) return el('p', { class: 'muted' }, 'No job of this source on record yet.');
  const ts = events.map((e) => Date.parse(e.at));
  const t0 = Math.min(...ts); const t1 = Math.max(...ts, t0 + 60e3);
  const pad = (t1 - t0) * 0.03;
  const x = xScale(t0 - pad, t1 + pad, L + 8, W - R - 8);
  JOB_LANES.forEach((j, i) => {
    const yy = T + lane * i + lane / 2;
    s.append(svg('line', { class: 'lane', x1: L, x2: W - R, y1: yy, y2: yy }),
      svg('text', { x: 4, y: yy + 4 }, j));
  });
  for (const e of [...events].reverse()) {
    const name = LANE_OF[e.job] || e.job;
    const i = JOB_LANES.indexOf(name) >= 0 ? JOB_LANES.indexOf(name) : JOB_LANES.length - 1;
    const yy = T + lane * i + lane / 2;
    const cx = x(Date.parse(e.at));
    const t = svg('title', {}, `${when(e.at)}: ${e.text}`);
    s.append(e.ok ? svg('circle', { class: 'ev-ok', cx, cy: yy, r: 5 }, t)
      : svg('path', { class: 'ev-failed', d: `M${cx - 6},${yy - 6}L${cx + 6},${yy + 6}M${cx + 6},${yy - 6}L${cx - 6},${yy + 6}` }, t));
  }
  s.append(svg('text', { x: L, y: H - 4 }, when(new Date(t0).toISOString())),
    svg('text', { x: W - R, y: H - 4, 'text-anchor': 'end' }, when(new Date(t1).toISOString())));
  return s;
}

function backupJob(name) {
  const d = state.daemon;
  const kinds = ['full', 'logical', 'physical'];
  const e = d && d.upcoming.map((u) => u.key.split('/')).find(([s, j]) => s === name && kinds.includes(j));
  return e ? e[1] : 'full';
}

async function runNow(name, job) {
  const r = await post('/api/run', { source: name, job });
  notice(sentence(r), r.ok);
  if (r.ok) setTimeout(refreshAll, 500);
}

function drawDrill(d) {
  if (!d.drill) {
    return el('p', { class: 'muted', id: 'drill-none' }, 'No drill of this source is on record yet: run one to measure how long a recovery takes.');
  }
  const r = d.drill;
  const fig = (label, v, obj, met) => el('div', { class: `panel lvl-${met ? 'ok' : 'critical'}`, 'data-figure': label },
    el('div', { class: 'muted' }, label),
    el('div', { class: 'figure' }, secs(v)),
    el('div', {}, `objective ${secs(obj)}: ${met ? 'met' : 'missed'}`));
  return el('div', { id: 'drill' },
    el('p', {}, `Last drill ${ago(r.finished_at)} (${when(r.finished_at)}) of snapshot ${r.snapshot.slice(0, 8)}: `,
      el('strong', { class: r.ok ? '' : 'bad' }, r.ok ? 'the recovery worked and every check passed.' : `it failed: ${r.error || 'a check failed'}.`)),
    el('div', { class: 'drill' },
      fig('RTO (time to recover)', r.rto_seconds, r.rto_objective_seconds, r.rto_met),
      fig('RPO (data-loss window)', r.rpo_seconds, r.rpo_objective_seconds, r.rpo_met)),
    el('details', {}, el('summary', {}, 'The drill report'), el('pre', { class: 'report' }, d.drill_markdown || '')));
}

function drawDetail() {
  const box = $('detail');
  const name = state.source;
  const src = state.status && state.status.sources.find((s) => s.source === name);
  const d = state.sourceData;
  box.replaceChildren(el('a', { class: 'back', href: '#/' }, '← All sources'));
  if (!src && !d) {
    box.append(el('p', { class: 'muted' }, `Reading ${name}…`));
    return;
  }
  const head = el('article', { class: `card lvl-${src ? src.level : 'ok'}`, id: 'source-card', 'data-source': name },
    el('h3', {}, name, src ? pill(src.level) : null),
    src ? el('p', { class: 'sentence' }, levelSentence(src)) : null,
    el('div', { class: 'actions' },
      el('button', { type: 'button', id: 'run-backup', onclick: () => runNow(name, backupJob(name)) }, 'Run a backup now'),
      el('button', { type: 'button', id: 'run-drill', onclick: () => runNow(name, 'drill') }, 'Run a drill now'),
      state.session && state.session.role === 'operator' ? null
        : el('span', { class: 'muted' }, 'Starting a job needs a login as an operator.')),
    src ? checkList(src.checks) : null);
  box.append(head);
  if (src) {
    box.append(el('h2', {}, 'Checklist'), el('div', { class: 'panel' },
      el('ul', { class: 'plain' }, src.checklist.map((i) => el('li', { 'data-done': String(i.done) },
        el('span', { class: `tick ${i.done ? 'done' : 'open'}` }, i.done ? '✓' : '✗'),
        el('span', { class: 'muted' }, `${i.period}: `), i.item)))));
  }
  if (!d) {
    box.append(el('p', { class: 'muted' }, 'Reading the repository…'));
    return;
  }
  box.append(el('h2', {}, 'Timeline'),
    el('p', { class: 'muted' }, `${d.snapshots} snapshots, ${d.records} journal records; the newest ${d.events.length} events:`),
    el('div', { class: 'panel' }, timelineStrip(d.events)));
  const pts = (f) => d.backups.map((b) => ({ x: Date.parse(b.at), y: f(b) }));
  const wal = d.wal_per_hour.map(([t, n]) => ({ x: Date.parse(t), y: n }));
  const lag = d.copy_lag.map((l) => ({ x: Date.parse(l.at), y: l.seconds }));
  box.append(el('h2', {}, 'Over time'), el('div', { class: 'plots' },
    plot('Size of each backup', pts((b) => b.size), bytes, { id: 'size' }),
    plot('Bytes each backup added', pts((b) => b.added), bytes, { id: 'added' }),
    plot('How long each backup took', pts((b) => b.seconds), secs, { id: 'duration' }),
    plot('WAL files archived per hour (last 7 days)', wal, (v) => String(Math.round(v)),
      { id: 'wal', bars: true, empty: 'No WAL archive: this source is not archived continuously.' }),
    plot('Copy lag: how long after its backup each copy landed', lag, secs,
      { id: 'copy-lag', empty: 'No copy on record: [[copies]] names no repository, or none ran yet.' })));
  box.append(el('h2', {}, 'Last drill'), drawDrill(d));
  box.append(el('h2', {}, 'Events'), el('ul', { class: 'plain events panel', id: 'events' },
    d.events.slice(0, 100).map((e) => el('li', { class: e.ok ? '' : 'failed', 'data-job': e.job },
      el('span', { class: 'when', title: when(e.at) }, ago(e.at)),
      el('span', { class: 'job' }, e.job),
      el('span', {}, e.ok ? e.text : `✗ ${e.text}`)))));
}

// ---- journal -----------------------------------------------------------------------

async function loadJournal() {
  const f = $('journal-filter');
  const q = new URLSearchParams({ offset: state.journal.offset, limit: state.journal.limit });
  const source = state.source || f.source.value;
  if (source) q.set('source', source);
  if (f.job.value) q.set('job', f.job.value);
  if (f.failed.checked) q.set('failed', '1');
  const r = await getJSON(`/api/journal?${q}`);
  const body = $('journal-rows');
  if (!r.ok) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: 4, class: 'muted' }, sentence(r))));
    return;
  }
  const j = r.body;
  state.journal.total = j.total;
  const sel = f.job;
  const have = [...sel.options].map((o) => o.value).slice(1).join('|');
  if (have !== j.jobs.join('|')) {
    const v = sel.value;
    sel.replaceChildren(el('option', { value: '' }, 'all'), ...j.jobs.map((n) => el('option', { value: n }, n)));
    sel.value = v;
  }
  body.replaceChildren(...j.rows.map(({ row, text }) => el('tr', { class: row.ok ? '' : 'failed', 'data-job': row.job },
    el('td', { class: 'when', title: when(row.finished_at) }, ago(row.finished_at)),
    el('td', {}, row.source_name || row.source || '—'),
    el('td', {}, row.job),
    el('td', { class: 'what' }, row.ok ? text : `✗ ${text}`))));
  if (j.rows.length === 0) body.append(el('tr', {}, el('td', { colspan: 4, class: 'muted' }, 'No record matches.')));
  const last = Math.min(j.offset + j.rows.length, j.total);
  $('journal-count').textContent = j.total === 0 ? '' : `${j.offset + 1}–${last} of ${j.total}, failures first`;
  $('newer').disabled = j.offset === 0;
  $('older').disabled = last >= j.total;
}

// ---- refresh and routing -----------------------------------------------------------

async function refreshStatus() {
  const [s, d] = await Promise.all([getJSON('/api/status'), getJSON('/api/daemon')]);
  if (s.ok) {
    state.status = s.body;
    drawOverall();
    drawSources();
    drawChecklist();
  } else {
    $('overall').textContent = sentence(s);
  }
  if (d.ok) {
    state.daemon = d.body;
    drawDaemon();
  }
}

async function refreshSource() {
  if (!state.source) return;
  const r = await getJSON(`/api/source/${encodeURIComponent(state.source)}`);
  state.sourceData = r.ok ? r.body : null;
  drawDetail();
  if (!r.ok && r.status !== 404) $('detail').append(el('p', { class: 'muted' }, sentence(r)));
}

async function refreshAll() {
  await refreshStatus();
  await Promise.all([refreshSource(), loadJournal()]);
}

function route() {
  const m = location.hash.match(/^#\/source\/(.+)$/);
  state.source = m ? decodeURIComponent(m[1]) : null;
  state.sourceData = null;
  state.journal.offset = 0;
  $('overview').hidden = !!state.source;
  $('detail').hidden = !state.source;
  $('journal-filter').source.parentElement.hidden = !!state.source;
  $('notice').hidden = true;
  if (state.source) drawDetail();
  refreshSource();
  loadJournal();
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', login);
  $('login-cancel').addEventListener('click', () => $('login').close());
  $('journal-filter').addEventListener('change', () => { state.journal.offset = 0; loadJournal(); });
  $('newer').addEventListener('click', () => {
    state.journal.offset = Math.max(0, state.journal.offset - state.journal.limit); loadJournal();
  });
  $('older').addEventListener('click', () => { state.journal.offset += state.journal.limit; loadJournal(); });
  window.addEventListener('hashchange', route);
  loadSession();
  refreshStatus().then(() => { if (state.source) drawDetail(); });
  route();
  setInterval(refreshStatus, 10000);
  setInterval(() => Promise.all([refreshSource(), loadJournal()]), 30000);
});

// The modelladder dashboard: reads /ui/api/* and draws tables and inline SVG charts.
// No library, no build step. Every text from the store (prompts, answers, step names) goes
// through textContent, never innerHTML: model output must not become markup.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';

function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === 'text') node.textContent = v; else node.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid);
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const fmt = {
  pct: (x) => (x === null || x === undefined ? '–' : (100 * x).toFixed(1) + '%'),
  ms: (s) => (s === null || s === undefined ? '–' : s < 1 ? (1000 * s).toFixed(1) + ' ms' : s.toFixed(2) + ' s'),
  usd: (x) => {
    if (x === null || x === undefined) return '–';
    if (x === 0) return '$0';
    return x < 0.01 ? '$' + x.toPrecision(3) : '$' + x.toFixed(x < 10 ? 4 : 2);
  },
  time: (iso) => new Date(iso).toISOString().replace('T', ' ').slice(0, 19) + 'Z',
};

async function api(path) {
  const r = await fetch(path, { credentials: 'same-origin', headers: { accept: 'application/json' } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.error && body.error.message) || r.status + ' ' + r.statusText);
  return body;
}

function stepHref(key) { return '/ui/steps/' + encodeURIComponent(key); }
function runHref(id) { return '/ui/runs/' + encodeURIComponent(id); }

function card(name, value, detail, figure, cls) {
  return el('div', { class: 'card' }, el('div', { class: 'k', text: name }),
    el('div', { class: 'v ' + (cls || ''), 'data-figure': figure, text: value }),
    detail ? el('div', { class: 'd', text: detail }) : null);
}

function wrongText(s) {
  if (!s.labelled) return 'no labels';
  return fmt.pct(s.accepted_wrong) + ' (' + s.labelled_wrong + '/' + s.labelled + ')';
}

function frontierText(s) {
  const f = s.frontier;
  if (f.cost_usd === null) return '–';
  return fmt.usd(f.cost_usd);
}

function basis(f) {
  if (!f.rung) return 'no frontier rung known (no fleet, and no run reached a cloud rung)';
  const parts = [];
  for (const k of ['measured', 'priced', 'imputed', 'missing']) if (f[k]) parts.push(f[k] + ' ' + k);
  return 'on ' + f.rung + ': ' + parts.join(', ');
}

function windowNote(w, stepRuns) {
  if (stepRuns !== undefined) {
    const of = w.truncated ? ' among the newest ' + w.runs + ' of ' + w.total + ' runs' : ' of the ' + w.total + ' runs';
    return el('p', { class: 'sub', 'data-window': String(w.runs), text: stepRuns + ' runs of this step' + of + ' you can see.' });
  }
  const txt = w.truncated
    ? 'Figures over the newest ' + w.runs + ' of ' + w.total + ' runs (the dashboard reads at most ' + w.limit + ').'
    : 'Figures over all ' + w.total + ' runs you can see.';
  return el('p', { class: 'sub', 'data-window': String(w.runs), text: txt });
}

const DEFINITIONS = 'Edge share: runs whose accepted answer came from an edge rung, of all runs. ' +
  'Accepted-wrong: of the accepted answers that carry a label (a teacher or checker label on the answer, ' +
  'or feedback on the run; the newest counts), the share labelled wrong, with wrong/labelled and a 95% Wilson interval. ' +
  'Latency: end to end per run, every attempt included. Frontier-only: what the same runs would have cost sent ' +
  'straight to the frontier rung (the largest rung of the fleet; without a fleet, the priciest cloud rung seen): ' +
  'a run\u2019s recorded cost on that rung where it went there (measured), else that rung\u2019s list price on the ' +
  'run\u2019s tokens (priced), else the step\u2019s mean measured frontier cost (imputed).';

// -- charts -------------------------------------------------------------------------------------

function edgeOverTime(series) {
  const W = 760, H = 220, L = 44, R = 44, T = 16, B = 40;
  const buckets = series.buckets;
  const root = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, width: W, height: H,
    'data-chart': 'edge-share', role: 'img' });
  root.append(svg('title', {}, 'Edge share over time'));
  const maxRuns = Math.max(1, ...buckets.map((b) => b.runs));
  const pw = W - L - R, ph = H - T - B, bw = Math.min(48, pw / Math.max(1, buckets.length));
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const y = T + ph * (1 - f);
    root.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y, y2: y }));
    root.append(svg('text', { x: W - R + 4, y: y + 4 }, (100 * f).toFixed(0) + '%'));
  }
  root.append(svg('text', { x: 4, y: T + 4 }, String(maxRuns)));
  root.append(svg('text', { x: 4, y: T + ph }, '0'));
  root.append(svg('text', { x: 4, y: H - 6 }, 'runs (bars, green: on the edge) · edge share (line, right axis)'));
  const points = [];
  buckets.forEach((b, i) => {
    const x = L + i * bw, h = ph * b.runs / maxRuns, he = ph * b.edge_runs / maxRuns;
    const rect = svg('rect', { class: 'bar-runs', x: x + 1, y: T + ph - h, width: Math.max(1, bw - 2), height: h,
      'data-mark': 'runs' });
    rect.append(svg('title', {}, `${fmt.time(b.start)}: ${b.runs} runs, ${b.edge_runs} on the edge`));
    root.append(rect);
    root.append(svg('rect', { class: 'bar-edge', x: x + 1, y: T + ph - he, width: Math.max(1, bw - 2), height: he,
      'data-mark': 'edge' }));
    if (b.edge_share !== null) points.push([x + bw / 2, T + ph * (1 - b.edge_share)]);
  });
  if (points.length > 1) root.append(svg('polyline', { class: 'share', points: points.map((p) => p.join(',')).join(' ') }));
  for (const [x, y] of points) root.append(svg('circle', { class: 'dot', cx: x, cy: y, r: 3, 'data-mark': 'share' }));
  root.append(svg('line', { class: 'axis', x1: L, x2: W - R, y1: T + ph, y2: T + ph }));
  const label = (i) => fmt.time(buckets[i].start).slice(5, 16);
  root.append(svg('text', { x: L, y: T + ph + 14 }, label(0)));
  if (buckets.length > 1) root.append(svg('text', { x: L + buckets.length * bw, y: T + ph + 14, 'text-anchor': 'end' }, label(buckets.length - 1)));
  return root;
}

function reasonBars(escalations) {
  const rows = Object.entries(escalations);
  const W = 760, row = 24, L = 220, H = Math.max(1, rows.length) * row + 12;
  const root = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, width: W, height: H, 'data-chart': 'escalations' });
  if (!rows.length) {
    root.append(svg('text', { x: 12, y: 20 }, 'no escalations'));
    return root;
  }
  const max = Math.max(...rows.map((r) => r[1]));
  rows.forEach(([reason, n], i) => {
    const y = 6 + i * row, w = (W - L - 60) * n / max;
    root.append(svg('text', { x: L - 8, y: y + 15, 'text-anchor': 'end' }, reason));
    root.append(svg('rect', { class: 'reason', x: L, y: y + 3, width: Math.max(1, w), height: row - 8, 'data-mark': reason }));
    root.append(svg('text', { x: L + w + 6, y: y + 15, 'data-reason-count': reason }, String(n)));
  });
  return root;
}

function meter(share) {
  const root = svg('svg', { width: 80, height: 10, viewBox: '0 0 80 10' });
  root.append(svg('rect', { class: 'meter-bg', x: 0, y: 0, width: 80, height: 10, rx: 2 }));
  root.append(svg('rect', { class: 'meter', x: 0, y: 0, width: 80 * (share || 0), height: 10, rx: 2, 'data-mark': 'edge' }));
  return root;
}

// -- views --------------------------------------------------------------------------------------

async function viewSteps(app) {
  const body = await api('/ui/api/steps');
  app.replaceChildren(el('h1', { text: 'Steps' }), windowNote(body.window));
  if (!body.data.length) {
    app.append(el('p', { text: 'No runs recorded yet.' }));
    return 'steps';
  }
  const head = ['step', 'runs', 'edge share', '', 'escalations', 'accepted-wrong', 'p50', 'p95', 'cost',
    'frontier-only', 'saved'];
  const table = el('table', { 'data-table': 'steps' }, el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { text: h })))));
  const tbody = el('tbody');
  for (const s of body.data) {
    const reasons = Object.entries(s.escalations).map(([r, n]) => r + ' ' + n).join(', ') || '–';
    tbody.append(el('tr', { 'data-step': s.key },
      el('td', {}, el('a', { href: stepHref(s.key), text: s.key })),
      el('td', { 'data-figure': 'runs', text: String(s.runs) }),
      el('td', { 'data-figure': 'edge-share', text: fmt.pct(s.edge_share) }),
      el('td', {}, meter(s.edge_share)),
      el('td', { class: 'l', 'data-figure': 'escalations', text: reasons }),
      el('td', { 'data-figure': 'accepted-wrong', text: wrongText(s) }),
      el('td', { 'data-figure': 'p50', text: fmt.ms(s.latency_p50_s) }),
      el('td', { 'data-figure': 'p95', text: fmt.ms(s.latency_p95_s) }),
      el('td', { 'data-figure': 'cost', text: fmt.usd(s.cost_usd) }),
      el('td', { 'data-figure': 'frontier', title: basis(s.frontier), text: frontierText(s) }),
      el('td', { 'data-figure': 'saving', text: s.saving === null ? '–' : fmt.pct(s.saving) })));
  }
  table.append(tbody);
  app.append(table, el('p', { class: 'note', text: DEFINITIONS }));
  return 'steps';
}

async function viewStep(app, key) {
  const s = await api('/ui/api/steps/' + encodeURIComponent(key));
  document.getElementById('crumbs').textContent = '/ step ' + s.key;
  const wrongCi = s.accepted_wrong_ci95 ? '95% CI ' + fmt.pct(s.accepted_wrong_ci95[0]) + '–' + fmt.pct(s.accepted_wrong_ci95[1]) : 'label answers to estimate it';
  app.replaceChildren(
    el('h1', { text: 'Step ' + s.key }), windowNote(s.window, s.runs),
    el('div', { class: 'cards' },
      card('runs', String(s.runs), s.resolved + ' resolved', 'runs'),
      card('edge share', fmt.pct(s.edge_share), s.edge_runs + ' of ' + s.runs + ' runs on the edge', 'edge-share', 'good'),
      card('escalated runs', String(s.escalated_runs), Object.values(s.escalations).reduce((a, b) => a + b, 0) + ' escalations', 'escalated'),
      card('accepted-wrong', s.labelled ? fmt.pct(s.accepted_wrong) : '–', s.labelled ? s.labelled_wrong + ' wrong of ' + s.labelled + ' labelled · ' + wrongCi : wrongCi, 'accepted-wrong', s.labelled_wrong ? 'bad' : ''),
      card('latency p50 / p95', fmt.ms(s.latency_p50_s) + ' / ' + fmt.ms(s.latency_p95_s), 'end to end per run', 'latency'),
      card('cost', fmt.usd(s.cost_usd), 'frontier-only ' + frontierText(s) + (s.saving === null ? '' : ' · saved ' + fmt.pct(s.saving)), 'cost'),
    ),
    el('h2', { text: 'Edge share over time' }), edgeOverTime(s.edge_share_over_time),
    el('p', { class: 'note', text: 'Buckets of ' + (s.edge_share_over_time.width_s / 60) + ' min.' }),
    el('h2', { text: 'Escalations by reason' }), reasonBars(s.escalations),
    el('h2', { text: 'Rungs' }), rungTable(s.rungs),
    el('p', { class: 'note', text: 'Frontier-only ' + basis(s.frontier) + '. ' + DEFINITIONS }),
    el('h2', { text: 'Recent runs' }), runTable(s.recent_runs));
  return 'step';
}

function rungTable(rungs) {
  const head = ['rung', 'placement', 'attempts', 'accepted', 'escalated', 'p50', 'p95', 'cost'];
  return el('table', { 'data-table': 'rungs' }, el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { text: h })))),
    el('tbody', {}, ...rungs.map((r) => el('tr', { 'data-rung': r.rung },
      el('td', { text: r.rung }), el('td', { text: r.placement }), el('td', { text: String(r.attempts) }),
      el('td', { text: String(r.accepted) }), el('td', { text: String(r.escalated) }),
      el('td', { text: fmt.ms(r.latency_p50_s) }), el('td', { text: fmt.ms(r.latency_p95_s) }),
      el('td', { text: fmt.usd(r.cost_usd) })))));
}

function runTable(runs) {
  const head = ['run', 'when', 'outcome', 'rung', 'attempts', 'escalations', 'label', 'latency', 'cost'];
  return el('table', { 'data-table': 'runs' }, el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { text: h })))),
    el('tbody', {}, ...runs.map((r) => el('tr', { 'data-run': r.run_id },
      el('td', { class: 'mono' }, el('a', { href: runHref(r.run_id), text: r.run_id.slice(0, 12) })),
      el('td', { text: fmt.time(r.created_at) }), el('td', { text: r.outcome }),
      el('td', { text: r.rung ? r.rung + ' (' + r.placement + ')' : '–' }), el('td', { text: String(r.attempts) }),
      el('td', { class: 'l', text: r.escalations.join(', ') || '–' }),
      el('td', { class: r.label === 'wrong' ? 'bad' : '', text: r.label || '–' }),
      el('td', { text: fmt.ms(r.latency_s) }), el('td', { text: fmt.usd(r.cost_usd) })))));
}

async function viewRun(app, id) {
  const r = await api('/ui/api/runs/' + encodeURIComponent(id));
  const crumbs = document.getElementById('crumbs');
  crumbs.replaceChildren('/ step ', el('a', { href: stepHref(r.key), text: r.key }), ' / run ' + r.run_id.slice(0, 12));
  const label = r.label ? (r.label.wrong ? 'wrong' : 'right') + ' (' + r.label.source + ')' : 'none';
  app.replaceChildren(
    el('h1', { class: 'mono', text: 'Run ' + r.run_id }),
    el('div', { class: 'cards' },
      card('outcome', r.outcome, r.reason || (r.rung ? 'accepted on ' + r.rung : ''), 'outcome', r.outcome === 'resolved' ? 'good' : 'bad'),
      card('accepted rung', r.rung || '–', r.placement || '', 'rung'),
      card('attempts', String(r.attempts.length), null, 'attempts'),
      card('latency', fmt.ms(r.latency_s), fmt.time(r.created_at), 'latency'),
      card('cost', fmt.usd(r.cost_usd), null, 'cost'),
      card('label', label, r.label && r.label.note ? r.label.note : null, 'label', r.label && r.label.wrong ? 'bad' : '')),
    el('h2', { text: 'Attempts' }),
    el('div', { class: 'attempts' }, ...r.attempts.map(attemptCard)),
    el('h2', { text: 'Messages' }),
    el('div', {}, ...r.messages.map((m) => el('div', { class: 'msg' }, el('div', { class: 'role', text: m.role || '' }),
      el('pre', { text: typeof m.content === 'string' ? m.content : JSON.stringify(m.content, null, 2) })))));
  return 'run';
}

function attemptCard(a) {
  const verdict = a.verdict === null ? 'none' + (a.error ? ' (' + a.error + ')' : '') : a.verdict + (a.verdict_reason ? ': ' + a.verdict_reason : '');
  const rows = [['placement', a.placement], ['verdict', verdict], ['escalation', a.escalation_reason || (a.accepted ? 'accepted' : '–')],
    ['latency', fmt.ms(a.latency_s)], ['cost', fmt.usd(a.cost_usd)], ['tokens', a.prompt_tokens + ' in / ' + a.completion_tokens + ' out']];
  const dl = el('dl');
  for (const [k, v] of rows) dl.append(el('dt', { text: k }), el('dd', { 'data-field': k, text: v }));
  return el('section', { class: 'attempt' + (a.accepted ? ' accepted' : ''), 'data-attempt': String(a.index) },
    el('h3', { text: '#' + a.index + ' ' + a.rung }), dl, el('pre', { 'data-field': 'text', text: a.text || a.error_detail || '' }));
}

// -- routing ------------------------------------------------------------------------------------

function countMarks() {
  let drawn = 0;
  document.querySelectorAll('svg[data-chart]').forEach((chart) => {
    const n = Array.prototype.filter.call(chart.querySelectorAll('[data-mark]'), (m) => {
      const b = m.getBBox(); return b.width > 0 || b.height > 0;
    }).length;
    chart.setAttribute('data-drawn', String(n));
    drawn += n > 0 ? 1 : 0;
  });
  return drawn;
}

async function main() {
  const app = document.getElementById('app');
  const path = decodeURIComponent(location.pathname);
  let view;
  try {
    if (path.startsWith('/ui/steps/')) view = await viewStep(app, path.slice('/ui/steps/'.length));
    else if (path.startsWith('/ui/runs/')) view = await viewRun(app, path.slice('/ui/runs/'.length));
    else view = await viewSteps(app);
  } catch (err) {
    app.replaceChildren(el('p', { class: 'error', 'data-error': '1', text: String(err.message || err) }));
    view = 'error';
  }
  document.body.setAttribute('data-charts-drawn', String(countMarks()));
  document.body.setAttribute('data-rendered', view);
}

main();

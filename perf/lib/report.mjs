// Medians, the comparison table (markdown, printed and written) and perf/RESULTS.md history.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Half the min..max range as a share of the median: a plain noise gauge for a few repetitions. */
export function spreadPct(xs) {
  const v = xs.filter((x) => Number.isFinite(x));
  if (v.length < 2) return NaN;
  const m = median(v);
  return m === 0 ? NaN : ((Math.max(...v) - Math.min(...v)) / 2 / m) * 100;
}

const fmt = {
  int: (x) => Math.round(x).toLocaleString('en-US'),
  ms: (x) => (x < 10 ? x.toFixed(2) : x.toFixed(1)),
  us: (x) => x.toFixed(1),
  gbps: (x) => x.toFixed(2),
  pct: (x) => Math.round(x).toString(),
  mb: (x) => x.toFixed(1),
  kb: (x) => x.toFixed(2),
  ratio: (x) => `${x.toFixed(2)}×`,
};

/**
 * The ratio columns of each mode (renderTable's ratioAgainst). node-floor's appear only when it
 * ran (renderTable drops pairs whose targets are not both present), so tables without it are
 * unchanged.
 */
export const RATIO_COLUMNS = {
  tcp: ['haproxy', 'haproxy-splice', 'nginx', 'direct', 'node-floor', ['node-floor', 'haproxy'], ['l4lb-native', 'haproxy'], ['l4lb-native', 'haproxy-splice'], ['l4lb-native', 'l4lb'], ['l4lb-bin', 'haproxy'], ['l4lb-bare', 'haproxy']],
  udp: ['nginx', 'direct', 'node-floor', ['node-floor', 'nginx']],
};

/**
 * rows: [{ label, unit, better: 'higher'|'lower'|null, kind: keyof fmt, values: { target: number[] } }]
 * columns: [{ id, label }]; ratioAgainst: ratio columns, each an id to compare l4lb with or a
 * [numerator, denominator] pair of ids; a column is shown only when both targets are present.
 */
export function renderTable(rows, columns, ratioAgainst) {
  const present = new Set(columns.map((c) => c.id));
  const ratios = ratioAgainst.map((r) => (Array.isArray(r) ? r : ['l4lb', r])).filter(([a, b]) => present.has(a) && present.has(b));
  const label = (id) => columns.find((c) => c.id === id)?.short ?? id;
  const head = ['workload · metric', ...columns.map((c) => c.label), ...ratios.map(([a, b]) => `${label(a)}/${label(b)}`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const row of rows) {
    const cells = columns.map((c) => {
      const xs = row.values[c.id];
      if (!xs || xs.length === 0) return '–';
      const m = median(xs);
      if (!Number.isFinite(m)) return 'failed';
      const s = spreadPct(xs);
      return fmt[row.kind](m) + (Number.isFinite(s) && s >= 0.5 ? ` ±${Math.round(s)}%` : '');
    });
    const rcells = ratios.map(([a, b]) => {
      const l = median(row.values[a] ?? []);
      const o = median(row.values[b] ?? []);
      return Number.isFinite(l) && Number.isFinite(o) && o > 0 ? `${(l / o).toFixed(2)}×` : '–';
    });
    const name = `${row.label} (${row.unit}${row.better ? `, ${row.better} is better` : ''})`;
    lines.push(`| ${[name, ...cells, ...rcells].join(' | ')} |`);
  }
  return lines.join('\n');
}

/**
 * The issue's acceptance targets, l4lb against HAProxy nbthread 1. The verdict uses the ratio of
 * medians; the per-repetition ratios (both measured minutes apart at most) and the per-CPU-second
 * ratio are shown beside it because outside load moves whole repetitions up and down.
 */
export function renderTargets(rows, goals) {
  const lines = [
    '| target | l4lb / HAProxy (nbthread 1) | needed | status | ratio in each repetition | per proxy CPU-second |',
    '| --- | ---: | ---: | --- | --- | ---: |',
  ];
  const verdicts = [];
  for (const g of goals) {
    const row = rows.find((r) => r.id === g.row);
    const eff = rows.find((r) => r.id === g.row.replace(/\.main$/, '.eff'));
    const ls = row?.values.l4lb ?? [];
    const hs = row?.values.haproxy ?? [];
    const l = median(ls);
    const h = median(hs);
    let ratio = '–';
    let status = 'not measured';
    if (Number.isFinite(l) && Number.isFinite(h) && h > 0) {
      const r = l / h;
      ratio = `${r.toFixed(2)}×`;
      status = r >= g.min ? '**met**' : '**not met**';
    }
    // Samples are pushed once per repetition per target (NaN on failure), so indices pair up.
    const paired = ls.map((x, i) => (Number.isFinite(x) && hs[i] > 0 ? (x / hs[i]).toFixed(2) : '–')).join(' / ') || '–';
    const el = median(eff?.values.l4lb ?? []);
    const eh = median(eff?.values.haproxy ?? []);
    const effRatio = Number.isFinite(el) && Number.isFinite(eh) && eh > 0 ? `${(el / eh).toFixed(2)}×` : '–';
    verdicts.push({ ...g, status });
    lines.push(`| ${g.label} | ${ratio} | ≥ ${g.min.toFixed(2)}× | ${status} | ${paired} | ${effRatio} |`);
  }
  return { text: lines.join('\n'), verdicts };
}

const MARKER = '<!-- bench: new runs are inserted below this line, newest first -->';
const HEADER = `# l4lb benchmark results

Written by \`npm run bench\` (\`perf/run\`, see \`perf/README.md\`). Every run adds a dated section
below, newest first; earlier runs stay as history. Numbers are medians over the repetitions
(± is half the min–max range); ratios compare medians. All traffic is on 127.0.0.1.

${MARKER}
`;

export function appendResults(file, section) {
  let text = existsSync(file) ? readFileSync(file, 'utf8') : HEADER;
  if (!text.includes(MARKER)) text = `${text.trimEnd()}\n\n${MARKER}\n`;
  const at = text.indexOf(MARKER) + MARKER.length;
  text = `${text.slice(0, at)}\n\n${section.trim()}\n${text.slice(at).replace(/^\n+/, '\n')}`;
  writeFileSync(file, text.endsWith('\n') ? text : `${text}\n`);
}

// The ratio table as a bar chart (issue 17): one group of bars per workload row, one bar per
// target, each bar the target's median divided by the reference target's (HAProxy for TCP,
// nginx for UDP), so 1.0 is "as good as the reference" and the direction of "better" is said
// on each row. A small, dependency-free SVG writer: plain strings, every text escaped.
import { median } from './report.mjs';

/** Characters of a row label that fit left of the bars at 12 px. */
const MAX_LABEL = 52;
const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

export function escapeXml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/**
 * The bars: for every row with a direction (better: higher|lower) and a finite reference median,
 * each other target's ratio to the reference. Pure, so the self-test can check the numbers.
 */
export function chartData(rows, columns, reference) {
  const groups = [];
  for (const row of rows) {
    if (!row.better) continue;
    const ref = median(row.values[reference] ?? []);
    if (!Number.isFinite(ref) || ref <= 0) continue;
    const bars = [];
    for (const c of columns) {
      if (c.id === reference) continue;
      const v = median(row.values[c.id] ?? []);
      if (!Number.isFinite(v)) continue;
      bars.push({ id: c.id, label: c.short ?? c.label ?? c.id, ratio: v / ref });
    }
    if (bars.length) groups.push({ label: row.label, better: row.better, bars });
  }
  return groups;
}

/**
 * SVG text. Bars are drawn on a linear scale from 0 to `maxRatio` (default: the largest ratio,
 * at least 1.5, at most 4); a longer bar is clipped and marked with its value. The dashed line
 * is the reference (1.0×).
 */
export function renderChart(rows, columns, { reference, title, maxRatio } = {}) {
  const groups = chartData(rows, columns, reference);
  const targets = [...new Map(groups.flatMap((g) => g.bars.map((b) => [b.id, b.label]))).entries()];
  const color = new Map(targets.map(([id], i) => [id, PALETTE[i % PALETTE.length]]));
  const largest = Math.max(1.5, ...groups.flatMap((g) => g.bars.map((b) => b.ratio)));
  const top = maxRatio ?? Math.min(4, Math.ceil(largest * 4) / 4);
  const refLabel = columns.find((c) => c.id === reference);
  const left = 330;
  const width = 900;
  const plotW = width - left - 70;
  const barH = 14;
  const gap = 12;
  const header = 76;
  const x = (r) => left + (Math.min(r, top) / top) * plotW;
  const parts = [];
  let y = header;
  for (const g of groups) {
    const h = g.bars.length * barH;
    // Long labels are cut to fit the left margin; the whole one is the tooltip.
    const full = `${g.label} (${g.better} is better)`;
    const shown = full.length > MAX_LABEL ? `${full.slice(0, MAX_LABEL - 1)}…` : full;
    parts.push(`<text x="${left - 8}" y="${y + h / 2 + 4}" text-anchor="end" class="row"><title>${escapeXml(full)}</title>${escapeXml(shown)}</text>`);
    for (const b of g.bars) {
      const clipped = b.ratio > top;
      const w = Math.max(1, x(b.ratio) - left);
      parts.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH - 2}" fill="${color.get(b.id)}"><title>${escapeXml(`${b.label}: ${b.ratio.toFixed(2)}×`)}</title></rect>`);
      parts.push(`<text x="${(left + w + 4).toFixed(1)}" y="${y + barH - 4}" class="val">${clipped ? '▶ ' : ''}${b.ratio.toFixed(2)}×</text>`);
      y += barH;
    }
    y += gap;
  }
  const height = y + 30;
  const ticks = [];
  for (let t = 0; t <= top + 1e-9; t += top > 2 ? 1 : 0.5) {
    ticks.push(`<line x1="${x(t).toFixed(1)}" y1="${header - 6}" x2="${x(t).toFixed(1)}" y2="${y - gap + 4}" class="grid"/><text x="${x(t).toFixed(1)}" y="${y + 10}" text-anchor="middle" class="tick">${t.toFixed(1)}×</text>`);
  }
  const legend = targets.map(([id, label], i) => `<rect x="${left + i * 130}" y="46" width="12" height="12" fill="${color.get(id)}"/><text x="${left + i * 130 + 16}" y="56" class="tick">${escapeXml(label)}</text>`);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    '<style>.row{font-size:12px;fill:#222}.val{font-size:11px;fill:#222}.tick{font-size:11px;fill:#555}.grid{stroke:#ddd;stroke-width:1}.ref{stroke:#222;stroke-width:1.5;stroke-dasharray:4 3}</style>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${escapeXml(title ?? 'Ratio to the reference')}</text>`,
    `<text x="10" y="38" class="tick">each bar: target ÷ ${escapeXml(refLabel?.label ?? reference)} (dashed line = 1.0×)</text>`,
    ...ticks,
    ...legend,
    ...parts,
    `<line x1="${x(1).toFixed(1)}" y1="${header - 6}" x2="${x(1).toFixed(1)}" y2="${y - gap + 4}" class="ref"/>`,
    '</svg>',
    '',
  ].join('\n');
}

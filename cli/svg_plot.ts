/**
 * A small, dependency-free SVG line plot for autotune and benchmark reports: time per call vs
 * batch size, one line per path or method, with vertical markers (e.g. the TMA/vector crossover).
 *
 * Text widths are estimated, not measured (no font metrics without a renderer), so spacing
 * decisions use a conservative average glyph width.
 */

export interface PlotSeries {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  dashed?: boolean;
  /** Any CSS colour; by default series take distinct colours from a fixed palette, in order. */
  color?: string;
}

export interface PlotMarker {
  x: number;
  label: string;
}

export interface LinePlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  logX?: boolean;
  logY?: boolean;
  series: ReadonlyArray<PlotSeries>;
  /** Vertical lines across the plot, labelled at the top. */
  markers?: ReadonlyArray<PlotMarker>;
  width?: number;
  height?: number;
}

// Tableau 10: distinct hues that stay apart for common colour-vision deficiencies.
export const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#59a14f",
  "#b07aa1",
  "#76b7b2",
  "#edc948",
  "#9c755f",
  "#ff9da7",
  "#7f7f7f",
] as const;

// Beyond the palette, colours repeat; a different dash keeps the lines apart.
const EXTRA_DASHES = ["", "2 3", "8 3 2 3"];

const FONT = "DejaVu Sans, Helvetica, Arial, sans-serif";
const TICK_FONT = 11;
const GLYPH = 0.62; // average advance of a sans-serif glyph, as a fraction of the font size

interface Tick {
  v: number;
  label: string | null;
  major: boolean;
}

interface Axis {
  log: boolean;
  lo: number; // in axis space (log10 of the value for log axes)
  hi: number;
  ticks: Tick[];
}

export function renderLinePlot(opts: LinePlotOptions): string {
  const W = opts.width ?? 880;
  const H = opts.height ?? 520;
  const logX = opts.logX ?? false;
  const logY = opts.logY ?? false;
  const markers = (opts.markers ?? []).filter((m) => Number.isFinite(m.x) && (!logX || m.x > 0));

  const series = opts.series.map((s, i) => ({
    name: s.name,
    color: s.color ?? PALETTE[i % PALETTE.length]!,
    dash: s.dashed ? "7 4" : (EXTRA_DASHES[Math.floor(i / PALETTE.length) % EXTRA_DASHES.length] ?? ""),
    points: s.points
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logX || x > 0) && (!logY || y > 0))
      .slice()
      .sort((a, b) => a[0] - b[0]),
  }));

  // Legend: to the right of the plot, never over the data.
  const legendFont = 12;
  const maxLegendChars = 34;
  const legendNames = series.map((s) => ellipsize(s.name, maxLegendChars));
  const legendTextW = Math.max(40, ...legendNames.map((n) => textWidth(n, legendFont)));
  const legendW = series.length > 0 ? Math.ceil(legendTextW + 48) : 0;

  const yTickW = 46; // room for labels like "100k" or "0.005"
  const left = 26 + yTickW + 8;
  const right = 16 + (legendW > 0 ? legendW + 12 : 0);
  const top = 48;
  const bottom = 58;
  const x0 = left;
  const x1 = W - right;
  const y0 = top;
  const y1 = H - bottom;

  const xs = [...series.flatMap((s) => s.points.map((p) => p[0])), ...markers.map((m) => m.x)];
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const ax = makeAxis(xs, logX, x1 - x0, "x");
  const ay = makeAxis(ys, logY, y1 - y0, "y");

  const px = (v: number) => x0 + ((toAxis(v, logX) - ax.lo) / (ax.hi - ax.lo)) * (x1 - x0);
  const py = (v: number) => y1 - ((toAxis(v, logY) - ay.lo) / (ay.hi - ay.lo)) * (y1 - y0);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${FONT}">`,
    `<title>${esc(opts.title)}</title>`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`,
    `<defs><clipPath id="plot-area"><rect x="${f(x0)}" y="${f(y0)}" width="${f(x1 - x0)}" height="${f(y1 - y0)}"/></clipPath></defs>`,
  );

  // Title, centred over the plot area so it lines up with the data rather than the legend.
  out.push(
    `<text x="${f((x0 + x1) / 2)}" y="28" text-anchor="middle" font-size="16" font-weight="bold" fill="#222">${esc(opts.title)}</text>`,
  );

  // Grid and ticks.
  const grid: string[] = [];
  const tickMarks: string[] = [];
  const tickLabels: string[] = [];
  for (const t of ax.ticks) {
    const x = px(t.v);
    if (t.major) grid.push(`<line x1="${f(x)}" y1="${f(y0)}" x2="${f(x)}" y2="${f(y1)}" stroke="#e6e6e6"/>`);
    tickMarks.push(`<line x1="${f(x)}" y1="${f(y1)}" x2="${f(x)}" y2="${f(y1 + (t.major ? 6 : 3))}" stroke="#444"/>`);
    if (t.label !== null) {
      tickLabels.push(
        `<text x="${f(x)}" y="${f(y1 + 19)}" text-anchor="middle" font-size="${TICK_FONT}" fill="#333">${esc(t.label)}</text>`,
      );
    }
  }
  for (const t of ay.ticks) {
    const y = py(t.v);
    if (t.major) grid.push(`<line x1="${f(x0)}" y1="${f(y)}" x2="${f(x1)}" y2="${f(y)}" stroke="#e6e6e6"/>`);
    tickMarks.push(`<line x1="${f(x0 - (t.major ? 6 : 3))}" y1="${f(y)}" x2="${f(x0)}" y2="${f(y)}" stroke="#444"/>`);
    if (t.label !== null) {
      tickLabels.push(
        `<text x="${f(x0 - 9)}" y="${f(y + 4)}" text-anchor="end" font-size="${TICK_FONT}" fill="#333">${esc(t.label)}</text>`,
      );
    }
  }
  out.push(`<g class="grid">${grid.join("")}</g>`);

  // Markers under the data, so lines stay visible where they cross.
  const markerLines: string[] = [];
  const markerLabels: string[] = [];
  const rowsEnd: number[] = []; // right edge of the last label placed in each row
  for (const m of [...markers].sort((a, b) => a.x - b.x)) {
    const x = px(m.x);
    if (x < x0 - 0.5 || x > x1 + 0.5) continue;
    markerLines.push(
      `<line class="marker" x1="${f(x)}" y1="${f(y0)}" x2="${f(x)}" y2="${f(y1)}" stroke="#333" stroke-width="1.2" stroke-dasharray="5 4"/>`,
    );
    const label = `${m.label}`;
    const w = textWidth(label, 11) + 8;
    const toLeft = x + 4 + w > x1; // near the right edge the label goes on the line's left
    const start = toLeft ? x - 4 - w : x + 4;
    let row = rowsEnd.findIndex((end) => start > end + 4);
    if (row === -1) {
      row = rowsEnd.length;
      rowsEnd.push(0);
    }
    rowsEnd[row] = start + w;
    const ty = y0 + 16 + row * 17;
    markerLabels.push(
      `<rect x="${f(start)}" y="${f(ty - 12)}" width="${f(w)}" height="16" fill="#ffffff" fill-opacity="0.85"/>` +
        `<text class="marker-label" x="${f(start + 4)}" y="${f(ty)}" font-size="11" fill="#222">${esc(label)}</text>`,
    );
  }
  out.push(`<g class="markers">${markerLines.join("")}</g>`);

  // Data.
  const data: string[] = [];
  for (const s of series) {
    if (s.points.length === 0) continue;
    const d = s.points.map(([x, y], i) => `${i === 0 ? "M" : "L"}${f(px(x))} ${f(py(y))}`).join(" ");
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : "";
    data.push(
      `<path class="series" d="${d}" fill="none" stroke="${esc(s.color)}" stroke-width="2" stroke-linejoin="round"${dash}><title>${esc(s.name)}</title></path>`,
    );
    if (s.points.length <= 80) {
      data.push(
        `<g fill="${esc(s.color)}">${s.points.map(([x, y]) => `<circle cx="${f(px(x))}" cy="${f(py(y))}" r="2.6"/>`).join("")}</g>`,
      );
    }
  }
  out.push(`<g clip-path="url(#plot-area)">${data.join("")}</g>`);
  if (data.length === 0) {
    out.push(
      `<text x="${f((x0 + x1) / 2)}" y="${f((y0 + y1) / 2)}" text-anchor="middle" font-size="14" fill="#888">no data</text>`,
    );
  }
  out.push(`<g class="marker-labels">${markerLabels.join("")}</g>`);

  // Frame, ticks and axis labels on top of the data.
  out.push(`<rect x="${f(x0)}" y="${f(y0)}" width="${f(x1 - x0)}" height="${f(y1 - y0)}" fill="none" stroke="#444"/>`);
  out.push(`<g class="ticks">${tickMarks.join("")}</g>`, `<g class="tick-labels">${tickLabels.join("")}</g>`);
  out.push(
    `<text x="${f((x0 + x1) / 2)}" y="${f(H - 16)}" text-anchor="middle" font-size="13" fill="#222">${esc(opts.xLabel)}</text>`,
    `<text transform="translate(18 ${f((y0 + y1) / 2)}) rotate(-90)" text-anchor="middle" font-size="13" fill="#222">${esc(opts.yLabel)}</text>`,
  );

  // Legend.
  if (series.length > 0) {
    const lx = x1 + 14;
    // Many series squeeze the rows, down to a size that still reads, rather than run off the image.
    const rowH = Math.max(13, Math.min(19, (H - y0 - 22) / series.length));
    const itemFont = rowH < 16 ? 10 : legendFont;
    const lh = series.length * rowH + 12;
    const items = series.map((s, i) => {
      const y = y0 + 6 + i * rowH + rowH / 2 + 2;
      const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : "";
      return (
        `<line x1="${f(lx + 8)}" y1="${f(y)}" x2="${f(lx + 32)}" y2="${f(y)}" stroke="${esc(s.color)}" stroke-width="2"${dash}/>` +
        `<circle cx="${f(lx + 20)}" cy="${f(y)}" r="2.6" fill="${esc(s.color)}"/>` +
        `<text x="${f(lx + 38)}" y="${f(y + itemFont / 3)}" font-size="${itemFont}" fill="#222">${esc(legendNames[i]!)}</text>`
      );
    });
    out.push(
      `<g class="legend"><rect x="${f(lx)}" y="${f(y0)}" width="${f(legendW)}" height="${f(lh)}" fill="#ffffff" stroke="#bbb" rx="3"/>${items.join("")}</g>`,
    );
  }

  out.push("</svg>");
  return out.join("\n") + "\n";
}

function toAxis(v: number, log: boolean): number {
  return log ? Math.log10(v) : v;
}

function makeAxis(values: number[], log: boolean, lengthPx: number, dir: "x" | "y"): Axis {
  const finite = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  // Labels need their width along x, only their height along y.
  const labelSpan = (label: string) => (dir === "x" ? textWidth(label, TICK_FONT) + 10 : TICK_FONT + 6);
  return log ? logAxis(finite, lengthPx, labelSpan) : linearAxis(finite, lengthPx, labelSpan, dir);
}

function logAxis(values: number[], lengthPx: number, labelSpan: (l: string) => number): Axis {
  let lo = values.length ? Math.log10(Math.min(...values)) : 0;
  let hi = values.length ? Math.log10(Math.max(...values)) : 1;
  if (hi - lo < 0.3) {
    const mid = (lo + hi) / 2;
    lo = mid - 0.5;
    hi = mid + 0.5;
  }
  const pad = (hi - lo) * 0.03;
  lo -= pad;
  hi += pad;

  const perDecadePx = lengthPx / (hi - lo);
  const inView = (v: number) => {
    const a = Math.log10(v);
    return a >= lo - 1e-9 && a <= hi + 1e-9;
  };
  const all: number[] = [];
  for (let d = Math.floor(lo); d <= Math.ceil(hi); d++) {
    for (let m = 1; m <= 9; m++) if (inView(m * 10 ** d)) all.push(m * 10 ** d);
  }
  const mantissa = (v: number) => Math.round(v / 10 ** Math.floor(Math.log10(v) + 1e-9));
  const decades = all.filter((v) => mantissa(v) === 1);
  const ones25 = all.filter((v) => [1, 2, 5].includes(mantissa(v)));
  const fits = (labels: number[]) => {
    for (let i = 1; i < labels.length; i++) {
      const gap = (Math.log10(labels[i]!) - Math.log10(labels[i - 1]!)) * perDecadePx;
      if (gap < (labelSpan(fmt(labels[i]!)) + labelSpan(fmt(labels[i - 1]!))) / 2) return false;
    }
    return true;
  };

  // 1-2-5 when a few decades are in view and the labels fit; decades alone (thinned if they would
  // collide) over wider ranges; every integer multiple, or plain linear steps, for narrow ranges.
  let labelled: number[];
  if (decades.length <= 4 && ones25.length >= 2 && fits(ones25)) {
    labelled = ones25;
  } else if (decades.length >= 2) {
    const widest = Math.max(...decades.map((v) => labelSpan(fmt(v))));
    const every = Math.max(1, Math.ceil(widest / perDecadePx));
    labelled = decades.filter((_, i) => i % every === 0);
  } else if (all.length >= 2 && fits(all)) {
    labelled = all;
  } else {
    const lin = linearAxis([10 ** lo, 10 ** hi], lengthPx, labelSpan, "x").ticks.map((t) => t.v).filter(inView);
    labelled = lin.length >= 2 ? lin : [10 ** lo, 10 ** hi].map((v) => Number(v.toPrecision(2))).filter(inView);
  }

  const ticks: Tick[] = all.map((v) => ({ v, label: null, major: mantissa(v) === 1 }));
  for (const v of labelled) {
    const t = ticks.find((x) => Math.abs(x.v - v) <= 1e-9 * v);
    if (t) {
      t.label = fmt(v);
      t.major = true;
    } else ticks.push({ v, label: fmt(v), major: true });
  }
  ticks.sort((a, b) => a.v - b.v);
  return { log: true, lo, hi, ticks };
}

function linearAxis(values: number[], lengthPx: number, labelSpan: (l: string) => number, dir: "x" | "y"): Axis {
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  // Times and counts read best from zero when zero is not far off.
  if (dir === "y" && lo >= 0 && lo <= hi * 0.35) lo = 0;
  if (hi - lo < 1e-12 * Math.max(1, Math.abs(hi))) {
    lo -= Math.abs(lo) * 0.1 || 1;
    hi += Math.abs(hi) * 0.1 || 1;
  }
  let target = Math.max(2, Math.min(10, Math.floor(lengthPx / 70)));
  let step = niceStep((hi - lo) / target);
  for (;;) {
    const first = Math.floor(lo / step + 1e-9) * step;
    const last = Math.ceil(hi / step - 1e-9) * step;
    const n = Math.round((last - first) / step);
    const widest = Math.max(labelSpan(fmt(first)), labelSpan(fmt(last)));
    if ((n > 0 && lengthPx / n >= widest) || target <= 2) {
      const ticks: Tick[] = [];
      for (let i = 0; i <= n; i++) {
        const v = round(first + i * step, step);
        ticks.push({ v, label: fmt(v), major: true });
      }
      return { log: false, lo: first, hi: last, ticks };
    }
    target -= 1;
    step = niceStep((hi - lo) / target);
  }
}

function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
}

function round(v: number, step: number): number {
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + 2);
  return Number(v.toFixed(Math.min(12, digits)));
}

/** 1, 20, 500, 1k, 20k, 1M, 0.5, 0.02, 1e-5: short enough for a tick. */
export function fmt(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  const sign = v < 0 ? "-" : "";
  const units: Array<[number, string]> = [
    [1e12, "T"],
    [1e9, "G"],
    [1e6, "M"],
    [1e3, "k"],
  ];
  for (const [scale, suffix] of units) {
    if (a >= scale) return `${sign}${trim(a / scale)}${suffix}`;
  }
  if (a >= 1e-3) return `${sign}${trim(a)}`;
  return `${sign}${a.toExponential(0)}`;
}

function trim(v: number): string {
  return String(Number(v.toPrecision(3)));
}

function f(v: number): string {
  return String(Math.round(v * 10) / 10);
}

function textWidth(s: string, size: number): number {
  return [...s].length * size * GLYPH;
}

function ellipsize(s: string, max: number): string {
  const chars = [...s];
  return chars.length <= max ? s : `${chars.slice(0, max - 1).join("")}…`;
}

function esc(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;")
    // Characters XML 1.0 forbids outright; an SVG with one would not open at all.
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, "");
}

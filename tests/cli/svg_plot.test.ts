import { describe, expect, it } from "bun:test";
import { PALETTE, fmt, renderLinePlot, type LinePlotOptions } from "../../cli/svg_plot.ts";

const ns = Array.from({ length: 18 }, (_, b) => 2 ** b);
const vector = ns.map((n) => [n, 2 + n * 0.01] as const);
const tma = ns.map((n) => [n, 4 + n * 0.006] as const);

function autotunePlot(extra: Partial<LinePlotOptions> = {}): string {
  return renderLinePlot({
    title: "autotune 1024+128/i64",
    xLabel: "rows per call (n)",
    yLabel: "µs per call",
    logX: true,
    logY: true,
    series: [
      { name: "vector", points: vector },
      { name: "tma", points: tma },
      { name: "chosen", points: ns.map((n, i) => [n, Math.min(vector[i]![1], tma[i]![1])] as const), dashed: true },
    ],
    markers: [{ x: 512, label: "crossover n = 512" }],
    ...extra,
  });
}

/** Throws unless tags nest properly, attributes are quoted and every & starts an entity. */
function assertWellFormed(svg: string): void {
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(svg); m !== null; m = tag.exec(svg)) {
    const between = svg.slice(last, m.index);
    if (between.includes("<") || between.includes(">")) throw new Error(`stray markup near ${JSON.stringify(between.slice(0, 40))}`);
    last = tag.lastIndex;
    const [, close, name, , selfClose] = m;
    if (close) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
    } else if (!selfClose) stack.push(name!);
  }
  if (/[<>]/.test(svg.slice(last))) throw new Error("stray markup at the end");
  if (stack.length) throw new Error(`unclosed: ${stack.join(", ")}`);
  if (/&(?!amp;|lt;|gt;|quot;|apos;|#\d+;)/.test(svg)) throw new Error("bare ampersand");
}

function circlesOf(svg: string, color: string): Array<{ cx: number; cy: number }> {
  const group = new RegExp(`<g fill="${color}">(.*?)</g>`).exec(svg)?.[1] ?? "";
  return [...group.matchAll(/cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => ({ cx: Number(m[1]), cy: Number(m[2]) }));
}

describe("renderLinePlot", () => {
  it("returns a well-formed document with an <svg> root", () => {
    const svg = autotunePlot();
    expect(svg.startsWith("<svg ")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    assertWellFormed(svg);
    expect(svg).not.toMatch(/NaN|Infinity|undefined/);
  });

  it("names every series in the legend and shows title and axis labels", () => {
    const svg = autotunePlot();
    const legend = /<g class="legend">(.*?)<\/g>/.exec(svg)?.[1] ?? "";
    for (const name of ["vector", "tma", "chosen"]) expect(legend).toContain(`>${name}</text>`);
    for (const text of ["autotune 1024+128/i64", "rows per call (n)", "µs per call"]) expect(svg).toContain(text);
  });

  it("marks the crossover with a labelled vertical line where n = 512 lies", () => {
    const svg = autotunePlot();
    const line = /<line class="marker" x1="([\d.]+)" y1="([\d.]+)" x2="([\d.]+)" y2="([\d.]+)"/.exec(svg);
    expect(line).not.toBeNull();
    const [x1, y1, x2, y2] = line!.slice(1).map(Number) as [number, number, number, number];
    expect(x1).toBe(x2);
    expect(y2 - y1).toBeGreaterThan(100);
    expect(svg).toContain(">crossover n = 512</text>");
    // On a log axis 512 sits halfway between 256 and 1024.
    const pts = circlesOf(svg, PALETTE[0]);
    const at256 = pts[8]!.cx;
    const at1024 = pts[10]!.cx;
    expect(Math.abs(x1 - (at256 + at1024) / 2)).toBeLessThan(0.6);
  });

  it("labels the decades of a log axis", () => {
    const labels = [...autotunePlot().matchAll(/<text x="[\d.]+" y="[\d.]+" text-anchor="middle" font-size="11" fill="#333">([^<]*)<\/text>/g)].map((m) => m[1]);
    expect(labels).toEqual(["1", "10", "100", "1k", "10k", "100k"]);
  });

  it("gives every series its own colour and draws dashed series dashed", () => {
    const svg = autotunePlot();
    const paths = [...svg.matchAll(/<path class="series" d="[^"]*" fill="none" stroke="([^"]+)"[^>]*?( stroke-dasharray="[^"]+")?>/g)];
    expect(paths).toHaveLength(3);
    expect(new Set(paths.map((p) => p[1])).size).toBe(3);
    expect(paths.map((p) => Boolean(p[2]))).toEqual([false, false, true]);
  });

  it("keeps distinct styles for more series than the palette has colours", () => {
    const series = Array.from({ length: 12 }, (_, k) => ({ name: `m${k}`, points: vector.map(([x, y]) => [x, y * (k + 1)] as const) }));
    const svg = renderLinePlot({ title: "t", xLabel: "x", yLabel: "y", logX: true, logY: true, series });
    const styles = [...svg.matchAll(/<path class="series" d="[^"]*" fill="none" stroke="([^"]+)" stroke-width="2" stroke-linejoin="round"( stroke-dasharray="[^"]+")?/g)].map((m) => `${m[1]}${m[2] ?? ""}`);
    expect(new Set(styles).size).toBe(12);
    assertWellFormed(svg);
  });

  it("keeps the legend to the right of the plot area", () => {
    const svg = autotunePlot();
    const frame = /<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="[\d.]+" fill="none" stroke="#444"\/>/.exec(svg)!;
    const legend = /<g class="legend"><rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"/.exec(svg)!;
    const plotRight = Number(frame[1]) + Number(frame[2]);
    expect(Number(legend[1])).toBeGreaterThan(plotRight);
    expect(Number(legend[1]) + Number(legend[2])).toBeLessThanOrEqual(880);
  });

  it("puts close markers' labels on different rows", () => {
    const svg = autotunePlot({ markers: [{ x: 500, label: "crossover n = 500" }, { x: 600, label: "another marker" }] });
    const ys = [...svg.matchAll(/<text class="marker-label" x="[\d.]+" y="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(ys).toHaveLength(2);
    expect(Math.abs(ys[0]! - ys[1]!)).toBeGreaterThanOrEqual(14);
  });

  it("escapes markup in titles, labels and series names", () => {
    const svg = renderLinePlot({
      title: 'a <b> & "c"',
      xLabel: "x < y",
      yLabel: "y & z",
      series: [{ name: "</svg><script>", points: [[1, 1], [2, 2]] }],
      markers: [{ x: 1.5, label: "<m>" }],
    });
    assertWellFormed(svg);
    expect(svg).not.toContain("<script>");
    expect(svg).toContain("&lt;/svg&gt;&lt;script&gt;");
    expect(svg).toContain("a &lt;b&gt; &amp; &quot;c&quot;");
  });

  it("drops points a log axis cannot show instead of emitting NaN", () => {
    const svg = renderLinePlot({
      title: "t",
      xLabel: "x",
      yLabel: "y",
      logX: true,
      logY: true,
      series: [{ name: "s", points: [[0, 1], [1, 0], [2, -1], [4, 3], [8, 5], [Number.NaN, 2]] }],
    });
    expect(svg).not.toMatch(/NaN|Infinity/);
    expect(circlesOf(svg, PALETTE[0])).toHaveLength(2);
  });

  it("labels a log axis that spans less than a decade", () => {
    const svg = renderLinePlot({ title: "t", xLabel: "x", yLabel: "y", logY: true, series: [{ name: "s", points: [[1, 3], [2, 6]] }] });
    const yLabels = [...svg.matchAll(/text-anchor="end" font-size="11" fill="#333">([^<]*)</g)].map((m) => m[1]);
    expect(yLabels.length).toBeGreaterThanOrEqual(2);
  });

  it("says there is no data rather than failing on an empty plot", () => {
    const svg = renderLinePlot({ title: "t", xLabel: "x", yLabel: "y", logX: true, logY: true, series: [] });
    assertWellFormed(svg);
    expect(svg).toContain(">no data</text>");
  });

  it("formats tick values briefly", () => {
    expect([1, 10, 100, 1000, 20000, 131072, 1e6, 0.5, 0.02, 2e-5, 0].map(fmt)).toEqual([
      "1", "10", "100", "1k", "20k", "131k", "1M", "0.5", "0.02", "2e-5", "0",
    ]);
  });
});

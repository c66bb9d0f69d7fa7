/**
 * What `bun run autotune` prints: the per-n table of a tuned layout, which design wins where, and
 * the progress line on stderr.
 */
import type { LayoutProfile } from "../autotune/profile.ts";

/** Where text goes; `isTTY` on stderr turns the progress line into one redrawn in place. */
export interface Writer {
  write(text: string): unknown;
  isTTY?: boolean;
}

const launchName = (c: { path: string; warps: number; rowsPerWarp: number }) =>
  c.path === "spread" ? `spread r${c.rowsPerWarp}` : `${c.path} w${c.warps}r${c.rowsPerWarp}`;

/** The per-n table of one layout's profile: the chosen launch, and the fastest of the next design. */
export function layoutTable(layout: LayoutProfile, rowBytes: number): string {
  const head = ["n", "chosen", "µs/call", "GB/s", "next design", "µs", "next/chosen"];
  const rows = layout.buckets.map((b) => {
    const best = b.ranked[0]!;
    const next = b.ranked[1];
    const gbs = (2 * b.n * rowBytes) / (best.us * 1e3);
    return [
      String(b.n),
      launchName(best),
      best.us.toFixed(2),
      gbs < 10 ? gbs.toFixed(2) : gbs < 100 ? gbs.toFixed(1) : gbs.toFixed(0),
      next === undefined ? "—" : launchName(next),
      next === undefined ? "—" : next.us.toFixed(2),
      next === undefined ? "—" : `${(next.us / best.us).toFixed(2)}×`,
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  // Text columns read best left-aligned, numbers right-aligned.
  const left = new Set([1, 4]);
  const line = (cells: string[]) =>
    cells.map((c, i) => (left.has(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

/** Which design wins where, as runs of n: "fastest: spread at n = 1-32, specialized at n = 64-65536". */
export function winnersLine(layout: LayoutProfile): string {
  const runs: { path: string; from: number; to: number }[] = [];
  for (const b of layout.buckets) {
    const path = b.ranked[0]!.path;
    const last = runs.at(-1);
    if (last !== undefined && last.path === path) last.to = b.n;
    else runs.push({ path, from: b.n, to: b.n });
  }
  return `fastest: ${runs.map((r) => `${r.path} at n = ${r.from === r.to ? r.from : `${r.from}-${r.to}`}`).join(", ")}`;
}

/** A duration as people read it: 0.25 s, 12.3 s, 3 min 5 s. */
export function seconds(ms: number): string {
  if (ms < 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

/**
 * Progress on stderr: one line redrawn in place on a terminal; otherwise (a log file, CI) a line
 * at each quarter, so logs stay short.
 */
export class Progress {
  #quarter = 0;
  #shown = false;

  constructor(
    readonly err: Writer,
    readonly total: number,
    readonly enabled: boolean,
  ) {}

  update(done: number, what: string): void {
    if (!this.enabled || this.total <= 0) return;
    const frac = Math.min(1, Math.max(0, done / this.total));
    const pct = Math.floor(frac * 100);
    if (this.err.isTTY) {
      const width = 20;
      const filled = Math.round(frac * width);
      // Kept short of 80 columns: a wrapped line cannot be redrawn with \r.
      const text = `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(pct).padStart(3)}%  ${what}`;
      this.err.write(`\r\x1b[K${text.length > 78 ? `${text.slice(0, 77)}…` : text}`);
      this.#shown = true;
      return;
    }
    const q = Math.floor(frac * 4);
    while (this.#quarter < q) {
      this.#quarter++;
      this.err.write(`autotune: ${this.#quarter * 25}% (${what})\n`);
    }
  }

  /** Takes the redrawn line off the terminal before other output. */
  clear(): void {
    if (!this.#shown) return;
    this.err.write("\r\x1b[K");
    this.#shown = false;
  }
}

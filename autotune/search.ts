/**
 * The tuning search: which launch of each kernel design is fastest for each batch-size bucket of
 * one layout. The timing is injected (`measure`), so the search runs and is tested without a GPU.
 *
 * Two methods: "exhaustive" times every launch of every path at every bucket; "search" times a few
 * per path and bucket and walks downhill. The walk is shaped by full grids of timings taken on an
 * H100 and an H200 (bench/NOTES.md):
 *
 * - the warp count matters little and smoothly, so the walk steps to the next warp count up or
 *   down, starting from the previous bucket's winner and fixed seeds; but single buckets have their
 *   own winner, so every bucket gets its own walk;
 * - rows per warp is not convex (4 rows can win where 2 lose), so a rows step goes to any other
 *   rows value;
 * - a path that trails the best by more than {@link BEHIND} (the TMA path below n ≈ 2048, the
 *   generic vector path wherever the specialized one runs, spread above small n) cannot win on
 *   timing noise: while it stays that far behind it gets one timing per bucket (its last winner)
 *   rather than a walk, and as soon as it comes within reach it is walked again. The vector path is
 *   always walked: calls that can take no other path get its best.
 *
 * Both methods then time the leaders once more and keep each launch's fastest time: `measure` is
 * already a best-of-several, but the smallest of many noisy numbers is biased low.
 */
import { bucketN, LAST_BUCKET, ROWS_PER_WARP, WARPS, type LaunchConfig, type Path } from "../src/vocabulary.ts";
import type { Bucket, Choice, LayoutProfile } from "./profile.ts";

/** Microseconds per call of `config` writing `n` rows; already the best of several timings. */
export type MeasureFn = (config: LaunchConfig, n: number) => number;

export type TuneMethod = LayoutProfile["method"];

export interface TuneOptions {
  measure: MeasureFn;
  /** The paths this layout can take on this GPU (eligibility.ts's runnablePaths); must include "vector". */
  paths: readonly Path[];
  /** Whether a launch may run at all (e.g. the TMA path's shared memory at 16 warps); default: all. */
  allowed?: (config: LaunchConfig) => boolean;
  /** Whether `measure` launches with programmatic dependent launch; recorded in the profile. */
  pdl: boolean;
  /** Buckets 0..maxBucket are tuned (n = 1 .. 2^maxBucket). Default: every bucket. */
  maxBucket?: number;
  /** Default "search". */
  method?: TuneMethod;
  /** Called after each bucket: buckets done, buckets in all, and which n was just tuned. */
  onProgress?: (done: number, total: number, label: string) => void;
  /** Milliseconds since the epoch; for tunedAt and tuneMs. Default Date.now. */
  now?: () => number;
}

export interface TuneStats {
  /** Calls to `measure`, re-timings included. */
  measurements: number;
  /** Distinct (launch, n) pairs timed. */
  configsMeasured: number;
  /** Distinct (launch, n) pairs there are: what "exhaustive" times (before its re-timings). */
  configsTotal: number;
  /** Calls to `measure` per bucket, index = bucket. */
  perBucket: number[];
}

export interface TuneResult {
  profile: LayoutProfile;
  stats: TuneStats;
}

/** Warps of the fixed starting points, each with one row per warp. */
export const SEED_WARPS = [2, 4, 8, 16] as const;

/** From this n on, a walk starts from the previous bucket's winner alone. */
export const FLAT_FROM_N = 8192;

/** How many launches of each path in reach are timed a second time. */
export const CONFIRM_TOP = 2;

/** A path this far behind the best (as a fraction) cannot win on timing noise. */
export const BEHIND = 0.05;

/** The warp counts a path's launches take: spread's block is sized by its row (warps 0). */
function warpsOf(path: Path): readonly LaunchConfig["warps"][] {
  return path === "spread" ? [0] : WARPS;
}

/** Every launch of `paths` that may be timed, in a fixed order (by path, then warps, then rows). */
export function configSpace(paths: readonly Path[], allowed: (config: LaunchConfig) => boolean = () => true): LaunchConfig[] {
  const out: LaunchConfig[] = [];
  for (const path of paths) {
    for (const warps of warpsOf(path)) for (const rowsPerWarp of ROWS_PER_WARP) out.push({ path, warps, rowsPerWarp });
  }
  return out.filter(allowed);
}

/** Tunes one layout; see {@link tuneLayoutWithStats} for the measurement counts as well. */
export function tuneLayout(opts: TuneOptions): LayoutProfile {
  return tuneLayoutWithStats(opts).profile;
}

/**
 * Tunes one layout and says how many timings it took. Deterministic for a deterministic
 * `measure`: the order of timings is fixed and ties go to the launch first in
 * {@link configSpace} order. Throws if `measure` throws or returns something other than a positive
 * finite number.
 */
export function tuneLayoutWithStats(opts: TuneOptions): TuneResult {
  const maxBucket = opts.maxBucket ?? LAST_BUCKET;
  if (!Number.isInteger(maxBucket) || maxBucket < 0 || maxBucket > LAST_BUCKET) {
    throw new RangeError(`maxBucket must be an integer in 0..${LAST_BUCKET}, got ${maxBucket}`);
  }
  const method = opts.method ?? "search";
  if (method !== "search" && method !== "exhaustive") {
    throw new RangeError(`method must be "search" or "exhaustive", got ${JSON.stringify(method)}`);
  }
  if (!opts.paths.includes("vector")) throw new RangeError("paths must include \"vector\": every write can take it");
  const allowed = opts.allowed ?? (() => true);
  const space = configSpace(opts.paths, allowed);
  const order = new Map(space.map((c, i) => [configName(c), i]));
  const now = opts.now ?? Date.now;
  const started = now();

  const grids: BucketGrid[] = [];
  for (let b = 0; b <= maxBucket; b++) {
    const grid = new BucketGrid(opts.measure, bucketN(b), order);
    const previous = grids[b - 1];
    if (method === "exhaustive") {
      for (const c of space) grid.get(c);
    } else {
      // Paths in the order they finished at the previous bucket, so the leader sets the bar early.
      const paths = previous === undefined ? [...opts.paths] : [...opts.paths].sort((a, z) => previous.best(a) - previous.best(z));
      for (const path of paths) {
        const last = previous?.ranked(path)[0];
        if (path !== "vector" && last !== undefined && farBehind(grid, previous!, path, last, allowed)) continue;
        let seeds = last === undefined || grid.n < FLAT_FROM_N ? fixedSeeds(path).filter(allowed) : [];
        // A path none of whose fixed seeds may run (only 1-warp TMA fits a 60 KB row) still gets a walk.
        if (seeds.length === 0 && last === undefined) seeds = space.filter((c) => c.path === path).slice(0, 1);
        walk(grid, last === undefined ? seeds : [...seeds, last], allowed);
      }
    }
    confirm(grid, opts.paths);
    grids.push(grid);
    opts.onProgress?.(b + 1, maxBucket + 1, `n = ${grid.n}`);
  }

  const buckets: Bucket[] = grids.map((grid, bucket) => {
    const ranked = opts.paths
      .flatMap((path) => {
        const p = grid.ranked(path)[0];
        return p === undefined ? [] : [grid.choice(p)];
      })
      .sort((a, z) => a.us - z.us || order.get(configName(a))! - order.get(configName(z))!);
    return { bucket, n: grid.n, ranked };
  });
  const perBucket = grids.map((g) => g.calls);
  const finished = now();
  return {
    profile: {
      tunedAt: new Date(finished).toISOString(),
      tuneMs: Math.max(0, finished - started),
      method,
      pdl: opts.pdl,
      buckets,
    },
    stats: {
      measurements: perBucket.reduce((a, c) => a + c, 0),
      configsMeasured: grids.reduce((a, g) => a + g.distinct, 0),
      configsTotal: (maxBucket + 1) * space.length,
      perBucket,
    },
  };
}

function configName(c: LaunchConfig): string {
  return `${c.path}:${c.warps}:${c.rowsPerWarp}`;
}

/** The timings of one bucket: every launch's fastest time so far, and how many calls it took. */
class BucketGrid {
  calls = 0;
  readonly #best = new Map<string, { config: LaunchConfig; us: number }>();

  constructor(
    readonly measure: MeasureFn,
    readonly n: number,
    readonly order: ReadonlyMap<string, number>,
  ) {}

  get distinct(): number {
    return this.#best.size;
  }

  /** The launch's fastest time, timing it first if it never was. */
  get(config: LaunchConfig): number {
    return this.#best.get(configName(config))?.us ?? this.retime(config);
  }

  /** Times the launch (again) and returns its fastest time so far. */
  retime(config: LaunchConfig): number {
    const us = this.measure(config, this.n);
    this.calls++;
    if (typeof us !== "number" || !Number.isFinite(us) || us <= 0) {
      throw new RangeError(
        `measure(${config.path}, ${config.warps} warps, ${config.rowsPerWarp} rows/warp, n = ${this.n}) returned ${String(us)}; ` +
          "expected a positive number of microseconds",
      );
    }
    const key = configName(config);
    const seen = this.#best.get(key);
    this.#best.set(key, { config, us: seen === undefined ? us : Math.min(seen.us, us) });
    return this.#best.get(key)!.us;
  }

  /** The timed launches of one path, fastest first, ties in configSpace order. */
  ranked(path: Path): LaunchConfig[] {
    return [...this.#best.values()]
      .filter((v) => v.config.path === path)
      .sort((a, z) => a.us - z.us || this.order.get(configName(a.config))! - this.order.get(configName(z.config))!)
      .map((v) => v.config);
  }

  /** The fastest time of a path in this bucket (Infinity when none was timed). */
  best(path: Path): number {
    const p = this.ranked(path)[0];
    return p === undefined ? Infinity : this.get(p);
  }

  /** The fastest launch timed so far, of any path. */
  leader(): LaunchConfig | undefined {
    let best: { config: LaunchConfig; us: number } | undefined;
    for (const v of this.#best.values()) if (best === undefined || v.us < best.us) best = v;
    return best?.config;
  }

  /** The fastest time of any path. */
  bestOfAll(): number {
    let best = Infinity;
    for (const v of this.#best.values()) best = Math.min(best, v.us);
    return best;
  }

  choice(config: LaunchConfig): Choice {
    return { path: config.path, warps: config.warps, rowsPerWarp: config.rowsPerWarp, us: this.get(config) };
  }

  /** true when a is faster than b, or as fast and first in configSpace order. */
  faster(a: LaunchConfig, b: LaunchConfig): boolean {
    const ta = this.get(a);
    const tb = this.get(b);
    return ta < tb || (ta === tb && this.order.get(configName(a))! < this.order.get(configName(b))!);
  }
}

/** The fixed starting points of a path: warps {@link SEED_WARPS} (spread: its one shape), one row per warp. */
function fixedSeeds(path: Path): LaunchConfig[] {
  return path === "spread" ? [{ path, warps: 0, rowsPerWarp: 1 }] : SEED_WARPS.map((warps) => ({ path, warps, rowsPerWarp: 1 }));
}

/**
 * The next warp count up or down, or any other rows-per-warp value: rows has only three values
 * and is not convex (see the module doc), so 1 → 4 must be one step.
 */
function neighbours(c: LaunchConfig): LaunchConfig[] {
  const out: LaunchConfig[] = [];
  const ws = warpsOf(c.path);
  const wi = ws.indexOf(c.warps);
  for (const w of [ws[wi - 1], ws[wi + 1]]) if (w !== undefined) out.push({ ...c, warps: w });
  for (const rowsPerWarp of ROWS_PER_WARP) if (rowsPerWarp !== c.rowsPerWarp) out.push({ ...c, rowsPerWarp });
  return out;
}

/**
 * Times the seeds, then descends from the fastest over {@link neighbours} until no neighbour is
 * faster. Each step strictly lowers the time on a finite grid, so it ends.
 */
function walk(grid: BucketGrid, seeds: readonly LaunchConfig[], allowed: (config: LaunchConfig) => boolean): void {
  if (seeds.length === 0) return;
  let at = seeds[0]!;
  for (const s of seeds) if (grid.faster(s, at)) at = s;
  for (;;) {
    let next = at;
    for (const q of neighbours(at)) if (allowed(q) && grid.faster(q, next)) next = q;
    if (next === at) return;
    at = next;
  }
}

/** Whether a time is more than {@link BEHIND} slower than the bucket's best so far. */
function behind(grid: BucketGrid, us: number): boolean {
  return us > grid.bestOfAll() * (1 + BEHIND);
}

/**
 * True while `path` is clearly out of the running: its best at the previous bucket trailed that
 * bucket's best by more than {@link BEHIND}, and at this n so do its last winner and the path in
 * the shape of this bucket's leader so far. The second probe matters: a path's last winner goes
 * stale while it is not walked (a 1-warp winner at n = 1 says nothing about n = 4096), and the
 * designs' landscapes move alike, so a path that can win is near the leader's shape.
 */
function farBehind(grid: BucketGrid, previous: BucketGrid, path: Path, last: LaunchConfig, allowed: (c: LaunchConfig) => boolean): boolean {
  if (!behind(previous, previous.best(path))) return false;
  if (!behind(grid, grid.get(last))) return false;
  const leader = grid.leader();
  if (leader === undefined) return true;
  const shaped: LaunchConfig = {
    path,
    warps: path === "spread" ? 0 : leader.warps === 0 ? 4 : leader.warps,
    rowsPerWarp: leader.rowsPerWarp,
  };
  return !allowed(shaped) || behind(grid, grid.get(shaped));
}

/** Times the {@link CONFIRM_TOP} fastest launches of each path in reach again. */
function confirm(grid: BucketGrid, paths: readonly Path[]): void {
  const reach = paths.filter((path) => path === "vector" || !behind(grid, grid.best(path)));
  for (const path of reach) for (const c of grid.ranked(path).slice(0, CONFIRM_TOP)) grid.retime(c);
}

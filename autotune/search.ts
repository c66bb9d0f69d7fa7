/**
 * The tuning search: which launch config is fastest for each batch-size bucket of one row layout.
 *
 * The timing itself is injected (`measure`), so the search runs and is tested without a GPU. Two
 * methods: "exhaustive" times every config at every bucket; "search" times a few per bucket and
 * walks downhill. The walk is shaped by full grids of timings taken on an H100 (every config at
 * every n, six passes, for bf16 512+64 and u8 528+128 rows with both loc types):
 *
 * - the warp count matters little and smoothly, so the walk steps to the next warp count up or
 *   down, and the best one from the previous bucket is a good start; but single buckets have
 *   their own winner (at n = 512, 8 warps beat the 4 that win at 256 and 1024 by 3-5 %), so
 *   every bucket gets its own walk rather than its neighbours' winner;
 * - rows per warp is not convex: at n = 8192 with int32 loc, 2 rows per warp are slower than 1
 *   and 4 rows are 7 % faster than 1. So a rows step goes to any other rows value, not just the
 *   next one, which would stop at 1;
 * - at small n more than one row per warp rarely helps, so the fixed starting points
 *   ({@link SEED_WARPS}, one row per warp) use one, and from n = 8192, where the warp count
 *   changes the time by a few percent at most, the walk starts from the previous winner alone;
 * - up to n = 2048 every TMA config is 5-13 % slower than the best vector one, so while TMA
 *   trails by more than {@link TMA_BEHIND} it gets two timings per bucket (its last winner, and
 *   TMA in the shape vector wins with) rather than a walk; as soon as either comes within reach,
 *   it is walked again.
 *
 * Both methods then time the leaders once more and keep each config's fastest time: `measure` is
 * already a best-of-several, but the smallest of many noisy numbers is biased low (the winner was
 * partly lucky), and timings now and then come out tens of percent slow.
 */
import {
  MAX_BUCKET,
  PATHS,
  ROWS_PER_WARP,
  WARPS,
  computeCrossoverN,
  type Bucket,
  type Choice,
  type LaunchConfig,
  type LayoutProfile,
} from "./profile.ts";

/** Microseconds per call of `cfg` writing `n` rows; already the best of several timings. */
export type MeasureFn = (cfg: LaunchConfig, n: number) => number;

export type TuneMethod = LayoutProfile["method"];

export type Path = LaunchConfig["path"];

export interface TuneOptions {
  measure: MeasureFn;
  /** false where the GPU has no TMA (before sm_90): only vector configs are timed. */
  tmaAllowed: boolean;
  /** Buckets 0..maxBucket are tuned, i.e. n = 1 .. 2^maxBucket. Default 16 (n up to 65536). */
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
  /** Distinct (config, n) pairs timed. */
  configsMeasured: number;
  /** Distinct (config, n) pairs there are: what "exhaustive" times (before its re-timings). */
  configsTotal: number;
  /** Calls to `measure` per bucket, index = bucket. */
  perBucket: number[];
}

export interface TuneResult {
  profile: LayoutProfile;
  stats: TuneStats;
}

export const DEFAULT_MAX_BUCKET = 16;

/** From this n on the walk starts from the previous bucket's winner alone (see the module doc). */
export const FLAT_FROM_N = 8192;

/** Warps of the fixed starting points, each with one row per warp. */
export const SEED_WARPS = [2, 4, 8, 16] as const;

/** How many configs of each path are timed a second time. */
export const CONFIRM_TOP = 2;

/**
 * TMA this far behind vector (as a fraction) cannot win on timing noise, which is a few percent;
 * bestTma is then only informative. While TMA stays that far behind, its grid is not walked and
 * its leaders are not timed again. Vector's always are: calls that cannot use TMA get bestVector.
 */
export const TMA_BEHIND = 0.05;

/** Every launch config that may be timed, in a fixed order (vector first, then by warps, rows). */
export function configSpace(tmaAllowed: boolean): LaunchConfig[] {
  const out: LaunchConfig[] = [];
  for (const path of pathsFor(tmaAllowed)) {
    for (const warps of WARPS) for (const rowsPerWarp of ROWS_PER_WARP) out.push({ path, warps, rowsPerWarp });
  }
  return out;
}

/** Tunes one layout; see {@link tuneLayoutWithStats} for the measurement counts as well. */
export function tuneLayout(opts: TuneOptions): LayoutProfile {
  return tuneLayoutWithStats(opts).profile;
}

/**
 * Tunes one layout and says how many timings it took. Deterministic for a deterministic
 * `measure`: the order of timings is fixed and ties go to the config first in
 * {@link configSpace} order (so vector wins an exact tie). Throws if `measure` throws or returns
 * something other than a positive finite number.
 */
export function tuneLayoutWithStats(opts: TuneOptions): TuneResult {
  const maxBucket = opts.maxBucket ?? DEFAULT_MAX_BUCKET;
  if (!Number.isInteger(maxBucket) || maxBucket < 0 || maxBucket > MAX_BUCKET) {
    throw new RangeError(`maxBucket must be an integer in 0..${MAX_BUCKET}, got ${maxBucket}`);
  }
  const method = opts.method ?? "search";
  if (method !== "search" && method !== "exhaustive") {
    throw new RangeError(`method must be "search" or "exhaustive", got ${JSON.stringify(method)}`);
  }
  const now = opts.now ?? Date.now;
  const paths = pathsFor(opts.tmaAllowed);
  const started = now();

  const total = maxBucket + 1;
  const grids: BucketGrid[] = [];
  for (let b = 0; b <= maxBucket; b++) {
    const grid = new BucketGrid(opts.measure, 2 ** b);
    const previous = grids[b - 1];
    for (const path of paths) {
      if (method === "exhaustive") {
        for (let wi = 0; wi < WARPS.length; wi++) {
          for (let ri = 0; ri < ROWS_PER_WARP.length; ri++) grid.get({ path, wi, ri });
        }
      } else {
        const last = previous?.ranked(path)[0];
        // Vector comes first in PATHS, so its best here is known by now.
        if (path === "tma" && last !== undefined && tmaFarBehind(grid, previous!, last)) continue;
        const seeds = last === undefined || grid.n < FLAT_FROM_N ? fixedSeeds(path) : [];
        walk(grid, last === undefined ? seeds : [...seeds, last]);
      }
    }
    confirm(grid, paths);
    grids.push(grid);
    opts.onProgress?.(b + 1, total, `n = ${grid.n}`);
  }

  const buckets: Bucket[] = grids.map((grid, b) => {
    const bestVector = grid.choice(grid.ranked("vector")[0]!);
    const bestTma = opts.tmaAllowed ? grid.choice(grid.ranked("tma")[0]!) : null;
    // Ties go to vector: it is the path every call may take.
    const best = bestTma !== null && bestTma.us < bestVector.us ? bestTma : bestVector;
    return { bucket: b, n: grid.n, best: { ...best }, bestVector, bestTma };
  });
  const perBucket = grids.map((g) => g.calls);
  const configsMeasured = grids.reduce((a, g) => a + g.distinct, 0);

  const finished = now();
  const profile: LayoutProfile = {
    tunedAt: new Date(finished).toISOString(),
    tuneMs: Math.max(0, finished - started),
    method,
    crossoverN: computeCrossoverN(buckets),
    buckets,
  };
  const stats: TuneStats = {
    measurements: perBucket.reduce((a, c) => a + c, 0),
    configsMeasured,
    configsTotal: (maxBucket + 1) * paths.length * WARPS.length * ROWS_PER_WARP.length,
    perBucket,
  };
  return { profile, stats };
}

/** A config as grid coordinates: indices into WARPS and ROWS_PER_WARP. */
interface Point {
  path: Path;
  wi: number;
  ri: number;
}

function pathsFor(tmaAllowed: boolean): readonly Path[] {
  return tmaAllowed ? PATHS : ["vector"];
}

function configOf(p: Point): LaunchConfig {
  return { path: p.path, warps: WARPS[p.wi]!, rowsPerWarp: ROWS_PER_WARP[p.ri]! };
}

/** Position in configSpace order; the tie-breaker. */
function orderOf(p: Point): number {
  return (PATHS.indexOf(p.path) * WARPS.length + p.wi) * ROWS_PER_WARP.length + p.ri;
}

function inGrid(p: Point): boolean {
  return p.wi >= 0 && p.wi < WARPS.length && p.ri >= 0 && p.ri < ROWS_PER_WARP.length;
}

/**
 * The next warp count up or down, or any other rows-per-warp value: rows has only three values
 * and is not convex (see the module doc), so 1 → 4 must be one step.
 */
function neighbours(p: Point): Point[] {
  const out: Point[] = [];
  for (const wi of [p.wi - 1, p.wi + 1]) out.push({ path: p.path, wi, ri: p.ri });
  for (let ri = 0; ri < ROWS_PER_WARP.length; ri++) if (ri !== p.ri) out.push({ path: p.path, wi: p.wi, ri });
  return out.filter(inGrid);
}

/** The timings of one bucket: every config's fastest time so far, and how many calls it took. */
class BucketGrid {
  calls = 0;
  readonly #best = new Map<number, { p: Point; us: number }>();

  constructor(
    readonly measure: MeasureFn,
    readonly n: number,
  ) {}

  get distinct(): number {
    return this.#best.size;
  }

  /** The config's fastest time, timing it first if it never was. */
  get(p: Point): number {
    return this.#best.get(orderOf(p))?.us ?? this.retime(p);
  }

  /** Times the config (again) and returns its fastest time so far. */
  retime(p: Point): number {
    const cfg = configOf(p);
    const us = this.measure(cfg, this.n);
    this.calls++;
    if (typeof us !== "number" || !Number.isFinite(us) || us <= 0) {
      throw new RangeError(
        `measure(${cfg.path}, ${cfg.warps} warps, ${cfg.rowsPerWarp} rows/warp, n = ${this.n}) returned ${String(us)}; ` +
          "expected a positive number of microseconds",
      );
    }
    const key = orderOf(p);
    const seen = this.#best.get(key);
    const fastest = seen === undefined ? us : Math.min(seen.us, us);
    this.#best.set(key, { p, us: fastest });
    return fastest;
  }

  /** The timed configs of one path, fastest first, ties in configSpace order. */
  ranked(path: Path): Point[] {
    return [...this.#best.entries()]
      .filter(([, v]) => v.p.path === path)
      .sort(([ka, a], [kb, b]) => a.us - b.us || ka - kb)
      .map(([, v]) => v.p);
  }

  choice(p: Point): Choice {
    return { ...configOf(p), us: this.get(p) };
  }

  /** true when a is faster than b, or as fast and first in configSpace order. */
  faster(a: Point, b: Point): boolean {
    const ta = this.get(a);
    const tb = this.get(b);
    return ta < tb || (ta === tb && orderOf(a) < orderOf(b));
  }
}

/** The fixed starting points of a path: warps {@link SEED_WARPS}, one row per warp. */
function fixedSeeds(path: Path): Point[] {
  return SEED_WARPS.map((w) => ({ path, wi: WARPS.indexOf(w), ri: 0 }));
}

/**
 * Times the seeds, then descends from the fastest over {@link neighbours} until no neighbour is
 * faster. Each step strictly lowers the time on a finite grid, so it ends.
 */
function walk(grid: BucketGrid, seeds: readonly Point[]): void {
  let at = seeds[0]!;
  for (const s of seeds) if (grid.faster(s, at)) at = s;
  for (;;) {
    let next = at;
    for (const q of neighbours(at)) if (grid.faster(q, next)) next = q;
    if (next === at) return;
    at = next;
  }
}

/** Times the {@link CONFIRM_TOP} fastest configs of each path again; TMA's only while it is close. */
function confirm(grid: BucketGrid, paths: readonly Path[]): void {
  // Decided before vector's own re-timing, which can only lower vector's time: the more
  // generous comparison for TMA.
  const tmaBehind = paths.includes("tma") && behind(grid, grid.get(grid.ranked("tma")[0]!));
  for (const path of paths) {
    if (path === "tma" && tmaBehind) continue;
    for (const p of grid.ranked(path).slice(0, CONFIRM_TOP)) grid.retime(p);
  }
}

/** Whether a TMA time is more than {@link TMA_BEHIND} slower than vector's best in this bucket. */
function behind(grid: BucketGrid, tmaUs: number): boolean {
  return tmaUs > grid.get(grid.ranked("vector")[0]!) * (1 + TMA_BEHIND);
}

/**
 * True while TMA is clearly out of the running: its best at the previous bucket trailed vector
 * by more than {@link TMA_BEHIND}, and at this n so do that same config and TMA in the shape
 * vector now wins with (TMA's own last winner goes stale while it is not walked, and the two
 * paths' landscapes move alike). Any of them close enough, and TMA gets its walk.
 */
function tmaFarBehind(grid: BucketGrid, previous: BucketGrid, last: Point): boolean {
  if (!behind(previous, previous.get(previous.ranked("tma")[0]!))) return false;
  if (!behind(grid, grid.get(last))) return false;
  const v = grid.ranked("vector")[0]!;
  return behind(grid, grid.get({ path: "tma", wi: v.wi, ri: v.ri }));
}

/**
 * Where a layout's tuned launch configs come from, in order: this process's memory, the user's
 * profile file, the profiles bundled with the package, and last a fresh tune.
 *
 * Every problem met on the way (bad file, other setup, unwritable dir, another process tuning for
 * too long) is reported once per process through `warn`, and never stops the caller: at worst it
 * gets null and uses the built-in rule.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { envFlag, envNumber, type Env, type Warn } from "../ffi/environment.ts";
import { PACKAGE_ROOT } from "../ffi/package_root.ts";
import { cacheDir, profilePath } from "./cache_dir.ts";
import { LockTimeoutError, LockUnusableError, withLock, type LockOptions } from "./lock.ts";
import {
  LayoutKeySchema,
  LayoutProfileSchema,
  describeIssues,
  identityKey,
  makeProfile,
  sameGpuModel,
  type GpuIdentity,
  type LayoutProfile,
} from "./profile.ts";
import { ensureDir, readProfileFile, writeProfileFile, type ReadResult } from "./store.ts";

export type LookupSource = "memory" | "user" | "bundled" | "none";

export type { Warn };

/** Measures one layout on the current GPU. Injected so tests can pass a fake measurement. */
export type TuneFn = (identity: GpuIdentity, layoutKey: string) => LayoutProfile;

export interface LookupRequest {
  identity: GpuIdentity;
  layoutKey: string;
  /** Defaults to process.env. Read for the cache dir, MLA_KV_AUTOTUNE and MLA_KV_TUNE_WAIT_MS. */
  env?: Env;
  /** Defaults to console.warn. */
  warn?: Warn;
}

export interface LookupResult {
  source: LookupSource;
  layout: LayoutProfile | null;
  /** The user profile file for this identity (whether or not it exists). */
  path: string;
}

export interface GetOrTuneOptions extends LookupRequest {
  tune: TuneFn;
  /** false while tuning is impossible (e.g. a CUDA graph capture is in progress): never tune. */
  canTune?: boolean;
  /**
   * How long to wait for another process of the same identity that is tuning this layout.
   * Defaults to DEFAULT_TUNE_LOCK, with timeoutMs from MLA_KV_TUNE_WAIT_MS when that is set.
   */
  tuneLock?: { timeoutMs: number; staleMs: number };
  /**
   * The caller asked for this tune (autotune()): tune when no profile answers even when
   * MLA_KV_AUTOTUNE turns first-use tuning off (it is not read). Still under the tune lock.
   */
  explicit?: boolean;
  /**
   * Tune even when a profile answers, and even when MLA_KV_AUTOTUNE turns first-use tuning off:
   * an explicit request (autotune(), `bun run autotune --force`). Still under the tune lock.
   */
  force?: boolean;
}

export interface GetOrTuneResult {
  source: LookupSource | "tuned";
  layout: LayoutProfile | null;
  path: string;
  /** When source is "tuned": whether the result reached the user profile file. */
  persisted?: boolean;
  /**
   * When layout is null: why no tune was run. "tune-lock-timeout": another process of this
   * identity held the tune lock for this layout past the wait, and this process did not tune it.
   */
  why?: "autotune-disabled" | "cannot-tune" | "tune-lock-timeout";
}

export interface ProfileLookupOptions {
  /** Folder of bundled profiles; defaults to autotune/profiles/ next to this module. */
  bundledDir?: string;
}

/** The profiles shipped with the package (autotune/profiles/ of the package root). */
export const BUNDLED_PROFILES_DIR: string = join(PACKAGE_ROOT, "autotune", "profiles");

/**
 * Tuning one layout takes 0.1–0.3 s on an H100 plus the scratch allocation, so a holder that has
 * not finished after a minute is stuck (hung, or starved of its GPU), not slow. A waiter sits on a
 * synchronous write path, often during a server start, so it gives up then and uses the built-in
 * rule, which is correct, only perhaps slower, until the next start reads the holder's profile.
 * A lock is judged stale (taken over even though its holder seems alive) only well past any real
 * tune: a dead holder on this host is taken over at once anyway (autotune/lock.ts), so staleMs
 * only bounds how long a hung holder, or one on another host, keeps others on the built-in rule.
 */
export const DEFAULT_TUNE_LOCK = { timeoutMs: 60_000, staleMs: 10 * 60_000 } as const;

/**
 * Overrides DEFAULT_TUNE_LOCK.timeoutMs: whole milliseconds up to a day; 0 does not wait at all
 * (one try, which still takes over a lock whose holder died).
 */
export const TUNE_WAIT_ENV = "MLA_KV_TUNE_WAIT_MS";
const TUNE_WAIT_RANGE = { min: 0, max: 86_400_000, default: DEFAULT_TUNE_LOCK.timeoutMs };

/** MLA_KV_AUTOTUNE off (0, false, no, off, empty) turns tuning off; lookups still use stored profiles. */
export function autotuneEnabled(env: Env, warn?: Warn): boolean {
  return envFlag("MLA_KV_AUTOTUNE", true, { env, warn });
}

/** MLA_KV_QUIET on (1, true, yes, on) silences tuning lines and profile warnings. */
export function quietRequested(env: Env, warn?: Warn): boolean {
  return envFlag("MLA_KV_QUIET", false, { env, warn });
}

const defaultWarn: Warn = (line) => console.warn(line);

interface BundledEntry {
  file: string;
  result: ReadResult;
}

export class ProfileLookup {
  readonly bundledDir: string;
  readonly #memory = new Map<string, Map<string, LayoutProfile>>();
  readonly #bundled = new Map<string, BundledEntry[]>();
  readonly #warned = new Set<string>();
  /** Tune locks this process already waited out: asked again, it tries once instead of waiting. */
  readonly #gaveUp = new Set<string>();

  constructor(opts: ProfileLookupOptions = {}) {
    this.bundledDir = opts.bundledDir ?? BUNDLED_PROFILES_DIR;
  }

  /** memory → user file → bundled → none. Never tunes, never writes. */
  lookup(req: LookupRequest): LookupResult {
    const env = req.env ?? process.env;
    return this.#lookup(req.identity, checkedKey(req.layoutKey), env, req.warn ?? defaultWarn, false);
  }

  /**
   * The lookup, then, when nothing answered and tuning is allowed (canTune, and MLA_KV_AUTOTUNE
   * or `explicit`), a tune. Processes of the same identity tuning the same layout take turns on a lock, and a
   * waiter re-reads the file first, so one GPU model is tuned once, not once per process.
   * Throws only when `tune` throws or returns something that is not a valid LayoutProfile.
   */
  getOrTune(opts: GetOrTuneOptions): GetOrTuneResult {
    const env = opts.env ?? process.env;
    const warn = opts.warn ?? defaultWarn;
    const key = checkedKey(opts.layoutKey);
    const canTune = opts.canTune ?? true;
    const lockOpts = opts.tuneLock ?? { ...DEFAULT_TUNE_LOCK, timeoutMs: this.#tuneWaitMs(env, warn) };
    if (opts.force === true && canTune) return this.#tuneUnderLock(opts.identity, key, env, warn, opts.tune, lockOpts, true);
    const enabled = opts.explicit === true || autotuneEnabled(env, this.#onceVia(warn));
    const found = this.#lookup(opts.identity, key, env, warn, canTune && enabled);
    if (found.layout !== null) return found;
    if (!canTune) return { ...found, why: "cannot-tune" };
    if (!enabled) return { ...found, why: "autotune-disabled" };
    return this.#tuneUnderLock(opts.identity, key, env, warn, opts.tune, lockOpts, false);
  }

  /** Forgets answers and warnings, as a fresh process would. */
  clear(): void {
    this.#memory.clear();
    this.#bundled.clear();
    this.#warned.clear();
    this.#gaveUp.clear();
  }

  #tuneWaitMs(env: Env, warn: Warn): number {
    return envNumber(TUNE_WAIT_ENV, TUNE_WAIT_RANGE, { env, warn: this.#onceVia(warn) });
  }

  /** `warn`, saying each line once per lookup (as the environment's warnings are). */
  #onceVia(warn: Warn): Warn {
    return (line) => this.#warnOnce(warn, `line:${line}`, line);
  }

  #lookup(identity: GpuIdentity, key: string, env: Env, warn: Warn, willTune: boolean): LookupResult {
    const id = identityKey(identity);
    const path = profilePath(cacheDir(env, undefined, this.#onceVia(warn)), identity);

    const remembered = this.#memory.get(id)?.get(key);
    if (remembered !== undefined) return { source: "memory", layout: remembered, path };

    const user = readProfileFile(path, identity);
    if (user.ok) {
      const layout = user.profile.layouts[key];
      if (layout !== undefined) {
        this.#remember(id, key, layout);
        return { source: "user", layout, path };
      }
    }
    // Said once the outcome is known, so the line tells what actually happens instead.
    const userProblem = (action: string) => {
      if (user.ok || user.reason === "missing") return;
      this.#warnOnce(
        warn,
        `user:${path}:${user.reason}:${user.detail}`,
        `mla-kv: profile ${path} is ${phrase(user.reason)} (${user.detail}); ${action}`,
      );
    };

    for (const entry of this.#bundledFor(identity, id)) {
      const r = entry.result;
      if (r.ok) {
        const layout = r.profile.layouts[key];
        if (layout !== undefined) {
          userProblem("using the bundled profile");
          this.#remember(id, key, layout);
          return { source: "bundled", layout, path };
        }
        continue;
      }
      // Bundled profiles for other GPU models are expected and say nothing; one for this very
      // model that cannot be used (other driver, library, schema) or cannot be read is news.
      const relevant = r.header === undefined ? r.reason !== "foreign" : sameGpuModel(r.header.gpu, identity.gpu);
      if (relevant) {
        this.#warnOnce(
          warn,
          `bundled:${entry.file}:${r.reason}`,
          `mla-kv: bundled profile ${entry.file} not used: ${phrase(r.reason)} (${r.detail})`,
        );
      }
    }
    userProblem(willTune ? "re-tuning and replacing it" : "ignoring it");
    return { source: "none", layout: null, path };
  }

  #tuneUnderLock(
    identity: GpuIdentity,
    key: string,
    env: Env,
    warn: Warn,
    tune: TuneFn,
    lockOpts: { timeoutMs: number; staleMs: number },
    force: boolean,
  ): GetOrTuneResult {
    const dir = cacheDir(env, undefined, this.#onceVia(warn));
    const path = profilePath(dir, identity);
    const id = identityKey(identity);

    const run = (): GetOrTuneResult => {
      // Whoever held the lock before us may have tuned this very layout.
      const again = force ? null : readProfileFile(path, identity);
      const theirs = again?.ok ? again.profile.layouts[key] : undefined;
      if (theirs !== undefined) {
        this.#remember(id, key, theirs);
        return { source: "user", layout: theirs, path };
      }
      const measured = LayoutProfileSchema.safeParse(tune(identity, key));
      if (!measured.success) {
        throw new Error(`tune(${key}) returned an invalid layout profile: ${describeIssues(measured.error)}`);
      }
      const layout = measured.data;
      this.#remember(id, key, layout);
      const written = writeProfileFile(path, makeProfile(identity, { [key]: layout }));
      if (!written.ok) {
        const where = written.reason === "unwritable" ? `dir:${dir}` : `${written.reason}:${path}`;
        this.#warnOnce(
          warn,
          where,
          written.reason === "unwritable"
            ? `mla-kv: cannot save profiles in ${dir} (${written.detail}); keeping tuned configs in memory for this process`
            : `mla-kv: could not save ${path} (${written.reason}: ${written.detail}); keeping tuned configs in memory for this process`,
        );
      }
      return { source: "tuned", layout, path, persisted: written.ok };
    };

    const lockTarget = tuneLockTarget(path, key);
    // Once waited out, the same holder is not waited for again (another device of this identity,
    // say): one try, which still takes the lock over if its holder has died since.
    const wait = this.#gaveUp.has(lockTarget) ? { ...lockOpts, timeoutMs: 0 } : lockOpts;
    return withTuneLock(dir, lockTarget, wait, run, (e) => {
      // Any other failure to lock (an unwritable lock file, say) is no reason not to tune; one
      // that will fail every time (something that is not a lock file at its path) is said once.
      if (!(e instanceof LockTimeoutError)) {
        if (e instanceof LockUnusableError) this.#warnOnce(warn, `tune-lock:${lockTarget}`, `mla-kv: ${e.message}; tuning ${key} without it`);
        return run();
      }
      this.#gaveUp.add(lockTarget);
      // The lookup once more, never tuning: the holder may have saved its profile just as we gave
      // up, and a bundled profile for this layout, were there one, beats the built-in rule.
      const now = this.#lookup(identity, key, env, warn, false);
      if (now.layout !== null) return now;
      this.#warnOnce(
        warn,
        `tune-lock:${lockTarget}`,
        `mla-kv: another process has been tuning ${key} for more than ${seconds(lockOpts.timeoutMs)}; ` +
          `using the built-in rule in this process (its profile will be read on the next start)`,
      );
      return { source: "none", layout: null, path, why: "tune-lock-timeout" };
    });
  }

  #bundledFor(identity: GpuIdentity, id: string): BundledEntry[] {
    const cached = this.#bundled.get(id);
    if (cached !== undefined) return cached;
    let names: string[] = [];
    try {
      names = readdirSync(this.bundledDir)
        .filter((n) => n.endsWith(".json"))
        .sort();
    } catch {
      // no bundled profiles shipped
    }
    const entries = names.map((n) => {
      const file = join(this.bundledDir, n);
      return { file, result: readProfileFile(file, identity) };
    });
    this.#bundled.set(id, entries);
    return entries;
  }

  #remember(id: string, key: string, layout: LayoutProfile): void {
    let m = this.#memory.get(id);
    if (m === undefined) this.#memory.set(id, (m = new Map()));
    m.set(key, layout);
  }

  #warnOnce(warn: Warn, key: string, line: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    warn(line);
  }
}

/** What processes tuning one layout of one identity lock (the lock file is this plus ".lock"). */
export function tuneLockTarget(profileFile: string, layoutKey: string): string {
  return `${profileFile.replace(/\.json$/, "")}.${layoutKey.replace(/[^A-Za-z0-9]+/g, "_")}.tune`;
}

/**
 * Runs `fn` holding the tune lock `lockTarget` (see {@link tuneLockTarget}), made in `dir`. Without
 * `dir` (it cannot be made) there is no lock file, and `fn` runs unlocked: what it saves there
 * fails too and says why. An error thrown inside `fn` is rethrown; a failure to take the lock
 * (a timeout, an unusable lock file) goes to `onLockFailure`, whose result is returned.
 */
export function withTuneLock<T>(dir: string, lockTarget: string, wait: LockOptions, fn: () => T, onLockFailure: (error: unknown) => T): T {
  if (ensureDir(dir) !== null) return fn();
  let entered = false;
  try {
    return withLock(lockTarget, wait, () => {
      entered = true;
      return fn();
    });
  } catch (e) {
    if (entered) throw e;
    return onLockFailure(e);
  }
}

function checkedKey(key: string): string {
  const r = LayoutKeySchema.safeParse(key);
  if (!r.success) throw new RangeError(`not a valid layout key: ${JSON.stringify(key)} (expected e.g. 1024+128/i64)`);
  return r.data;
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

function phrase(reason: Exclude<ReadResult, { ok: true }>["reason"]): string {
  switch (reason) {
    case "foreign":
      return "for another setup";
    case "future-schema":
      return "from a newer package";
    default:
      return reason;
  }
}

/** The process-wide lookup: its memory and its once-per-process warnings. */
export const defaultLookup = new ProfileLookup();

export function getOrTune(opts: GetOrTuneOptions): GetOrTuneResult {
  return defaultLookup.getOrTune(opts);
}

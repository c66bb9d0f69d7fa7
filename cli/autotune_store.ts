/**
 * Where `bun run autotune` keeps what it tuned: the user profile that programs read on first use.
 */
import { dirname } from "node:path";
import { cacheDir, profilePath, type Env } from "../autotune/cache_dir.ts";
import { LockTimeoutError } from "../autotune/lock.ts";
import { DEFAULT_TUNE_LOCK, ProfileLookup, tuneLockTarget, withTuneLock } from "../autotune/lookup.ts";
import { makeProfile, type GpuIdentity, type LayoutProfile } from "../autotune/profile.ts";
import { writeProfileFile } from "../autotune/store.ts";
import { firstLine } from "./usage.ts";

export interface ProfileStore {
  /** Saves one tuned layout; returns where it went. Throws, saying why, when it cannot. */
  save(identity: GpuIdentity, layoutKey: string, layout: LayoutProfile): string;
  /** The stored profile programs would use for this layout, or null if there is none. */
  existing(identity: GpuIdentity, layoutKey: string): LayoutProfile | null;
  /**
   * Runs one layout's tune and save while other processes are kept from tuning that layout of
   * that GPU at the same time (two tunes on one GPU spoil each other's timings). Optional.
   */
  whileTuning?<T>(identity: GpuIdentity, layoutKey: string, fn: () => T): T;
}

// The command is run by hand and may wait long for a program's tune to finish, but judges a lock
// stale exactly as first use does, so the two never disagree about who holds it.
const TUNE_LOCK = { timeoutMs: 10 * 60_000, staleMs: DEFAULT_TUNE_LOCK.staleMs };

/**
 * The store programs read: the user profile file in the cache dir (MLA_KV_CACHE_DIR), with the
 * bundled profiles behind it for `existing`. Tunes take the same per-layout lock as tuning on
 * first use, so this command and a program starting up never time one GPU at once.
 */
export function userProfileStore(
  env: Env = process.env,
  warn: (line: string) => void = (l) => console.warn(l),
  lookup: ProfileLookup = new ProfileLookup(),
): ProfileStore {
  const fileFor = (identity: GpuIdentity) => profilePath(cacheDir(env, undefined, warn), identity);
  return {
    existing(identity, key) {
      return lookup.lookup({ identity, layoutKey: key, env, warn }).layout;
    },
    save(identity, key, layout) {
      const path = fileFor(identity);
      const r = writeProfileFile(path, makeProfile(identity, { [key]: layout }));
      if (!r.ok) throw new Error(`${path}: ${r.reason}: ${r.detail}`);
      return path;
    },
    whileTuning<T>(identity: GpuIdentity, key: string, fn: () => T): T {
      const path = fileFor(identity);
      // Without a dir there is no lock file; the save will say why.
      return withTuneLock(dirname(path), tuneLockTarget(path, key), { ...TUNE_LOCK, pollMs: 50 }, fn, (e) => {
        // The lock only keeps tunes apart; failing to get it is no reason not to tune.
        warn(
          e instanceof LockTimeoutError
            ? `mla-kv: another process kept tuning ${key} for more than ${TUNE_LOCK.timeoutMs / 60_000} min; tuning anyway`
            : `mla-kv: cannot take the tuning lock for ${key} (${firstLine(e)}); tuning anyway`,
        );
        return fn();
      });
    },
  };
}

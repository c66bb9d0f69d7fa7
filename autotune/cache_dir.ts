/**
 * Where user profiles live. A pure function of an env object so tests never touch the real cache.
 */
import { accessSync, constants, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { warnOnce, type Env, type Warn } from "../ffi/environment.ts";
import { identityKey, type GpuIdentity } from "./profile.ts";

export type { Env };

/**
 * `$MLA_KV_CACHE_DIR`, else `$XDG_CACHE_HOME/mla-kv`, else `~/.cache/mla-kv`; always absolute.
 * A relative MLA_KV_CACHE_DIR is refused with one warning (through `warn`, default stderr): it
 * would name another folder in every working directory, so processes would not share profiles.
 * `home` is only consulted when `env.HOME` is unset or relative.
 */
export function cacheDir(env: Env, home: () => string = homedir, warn?: Warn): string {
  const own = env.MLA_KV_CACHE_DIR;
  if (own !== undefined && own !== "") {
    const expanded = expandTilde(own, env, home);
    if (isAbsolute(expanded)) return expanded;
    const fallback = defaultDir(env, home);
    warnOnce(`mla-kv: MLA_KV_CACHE_DIR=${JSON.stringify(own)} is a relative path; using ${fallback} (give an absolute path)`, warn);
    return fallback;
  }
  return defaultDir(env, home);
}

/** `<dir>/<identityKey>.json`. */
export function profilePath(dir: string, identity: GpuIdentity): string {
  return join(dir, `${identityKey(identity)}.json`);
}

/**
 * Why profiles could not be saved in `dir`, or null when they could: the dir, or the nearest
 * folder above it that exists (where it would be made), must be a writable directory. Creates
 * nothing, so a report of the machine changes nothing on it.
 */
export function cacheDirProblem(dir: string): string | null {
  for (let probe = dir; ; probe = dirname(probe)) {
    let isDir: boolean;
    try {
      isDir = statSync(probe).isDirectory();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // Not there yet (or under a file, which the next step up finds): it would be made.
      if ((code === "ENOENT" || code === "ENOTDIR") && dirname(probe) !== probe) continue;
      return `cannot look at ${probe} (${code ?? (e as Error).message})`;
    }
    if (!isDir) return `${probe} is not a directory`;
    try {
      accessSync(probe, constants.W_OK | constants.X_OK);
    } catch (e) {
      return `${probe} is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
    }
    return null;
  }
}

function defaultDir(env: Env, home: () => string): string {
  const xdg = env.XDG_CACHE_HOME;
  // The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
  if (xdg !== undefined && xdg !== "" && isAbsolute(xdg)) return join(xdg, "mla-kv");
  return join(homeOf(env, home), ".cache", "mla-kv");
}

function homeOf(env: Env, home: () => string): string {
  const h = env.HOME;
  if (h !== undefined && isAbsolute(h)) return h;
  // A home that is still relative (a HOME of "." reaching os.homedir) is made absolute once here.
  return resolve(home());
}

// A literal "~" reaches us when the variable was set in a config file rather than a shell.
function expandTilde(p: string, env: Env, home: () => string): string {
  if (p === "~") return homeOf(env, home);
  if (p.startsWith("~/")) return join(homeOf(env, home), p.slice(2));
  return p;
}

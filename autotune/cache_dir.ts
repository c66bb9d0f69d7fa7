/**
 * Where user profiles live. A pure function of an env object so tests never touch the real cache.
 */
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
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

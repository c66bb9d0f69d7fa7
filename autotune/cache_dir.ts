/**
 * Where user profiles live. A pure function of an env object so tests never touch the real cache.
 */
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";
import { identityKey, type GpuIdentity } from "./profile.ts";

export type Env = Readonly<Record<string, string | undefined>>;

/**
 * `$MLA_KV_CACHE_DIR`, else `$XDG_CACHE_HOME/mla-kv`, else `~/.cache/mla-kv`.
 * `home` is only consulted when `env.HOME` is unset.
 */
export function cacheDir(env: Env, home: () => string = homedir): string {
  const own = env.MLA_KV_CACHE_DIR;
  if (own !== undefined && own !== "") return expandTilde(own, env, home);
  const xdg = env.XDG_CACHE_HOME;
  // The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
  if (xdg !== undefined && xdg !== "" && isAbsolute(xdg)) return join(xdg, "mla-kv");
  return join(homeOf(env, home), ".cache", "mla-kv");
}

/** `<dir>/<identityKey>.json`. */
export function profilePath(dir: string, identity: GpuIdentity): string {
  return join(dir, `${identityKey(identity)}.json`);
}

function homeOf(env: Env, home: () => string): string {
  const h = env.HOME;
  return h !== undefined && h !== "" ? h : home();
}

// A literal "~" reaches us when the variable was set in a config file rather than a shell.
function expandTilde(p: string, env: Env, home: () => string): string {
  if (p === "~") return homeOf(env, home);
  if (p.startsWith("~/")) return join(homeOf(env, home), p.slice(2));
  return p;
}

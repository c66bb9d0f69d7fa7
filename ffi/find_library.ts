/**
 * Finds and loads libmla_kv.
 *
 * Lookup order:
 *   1. `MLA_KV_LIBRARY` — an explicit path. When it is set it is the only candidate: a user who
 *      points at a library must get that one or an error, never a silent fallback to another
 *      build that may differ.
 *   2. `prebuilt/<platform>-<arch>/libmla_kv.so` inside the package — for published packages that
 *      ship a binary (none is shipped yet; the slot is checked so that adding one needs no code).
 *   3. `build/libmla_kv.so` inside the package — what `bun run build` produces.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { MlaKvError } from "./errors.ts";
import type { LibraryAdapter, OpenedLibrary } from "./library_adapter.ts";
import { PACKAGE_ROOT } from "./package_root.ts";

export { PACKAGE_ROOT };

/** Where a candidate path came from, for the error message. */
export type CandidateSource = "MLA_KV_LIBRARY" | "prebuilt" | "build";

/** One place libmla_kv may be. */
export interface LibraryCandidate {
  readonly path: string;
  readonly source: CandidateSource;
}

/** The library's file name on this platform. */
export function libraryFileName(platform: string = process.platform): string {
  if (platform === "win32") return "mla_kv.dll";
  if (platform === "darwin") return "libmla_kv.dylib";
  return "libmla_kv.so";
}

/** Where to look, in order. */
export function libraryCandidates(
  env: Record<string, string | undefined> = process.env,
  packageRoot: string = PACKAGE_ROOT,
  platform: string = process.platform,
  arch: string = process.arch,
): LibraryCandidate[] {
  const explicit = env.MLA_KV_LIBRARY;
  if (explicit !== undefined && explicit !== "") return [{ path: explicit, source: "MLA_KV_LIBRARY" }];
  const file = libraryFileName(platform);
  return [
    { path: `${packageRoot}/prebuilt/${platform}-${arch}/${file}`, source: "prebuilt" },
    { path: `${packageRoot}/build/${file}`, source: "build" },
  ];
}

const SOURCE_LABEL: Record<CandidateSource, string> = {
  MLA_KV_LIBRARY: "from MLA_KV_LIBRARY",
  prebuilt: "prebuilt for this platform",
  build: "local build",
};

/** Options of {@link openLibrary}; the defaults are the real environment and package. */
export interface OpenLibraryOptions {
  env?: Record<string, string | undefined>;
  packageRoot?: string;
  platform?: string;
  arch?: string;
}

/**
 * Loads the first candidate that exists and opens. A candidate that exists but fails to open
 * (wrong architecture, not a library, a missing CUDA dependency) does not stop the search, but
 * its reason is kept: the final error must say why each place was rejected, not just "not found".
 *
 * @throws {MlaKvError} code `LIBRARY_NOT_FOUND`, listing every path tried and how to fix it.
 */
export function openLibrary(adapter: LibraryAdapter, options: OpenLibraryOptions = {}): OpenedLibrary {
  const packageRoot = options.packageRoot ?? PACKAGE_ROOT;
  const candidates = libraryCandidates(
    options.env ?? process.env,
    packageRoot,
    options.platform ?? process.platform,
    options.arch ?? process.arch,
  );
  const tried: string[] = [];
  for (const candidate of candidates) {
    const label = `${candidate.path} (${SOURCE_LABEL[candidate.source]})`;
    if (!existsSync(candidate.path)) {
      tried.push(`  - ${label}: no such file`);
      continue;
    }
    try {
      return adapter.open(candidate.path);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      tried.push(`  - ${label}: exists but could not be loaded: ${reason}`);
    }
  }
  const explicit = candidates[0]?.source === "MLA_KV_LIBRARY";
  const fix = explicit
    ? "Fix: point MLA_KV_LIBRARY at a libmla_kv built for this machine, or unset it to use the package's own build (`bun run build`)."
    : `Fix: run \`bun run build\` in ${packageRoot} (needs nvcc), or set MLA_KV_LIBRARY=/path/to/${libraryFileName(options.platform)}.`;
  return throwNotFound(`libmla_kv could not be loaded (${adapter.runtime}). Tried:\n${tried.join("\n")}\n${fix}`);
}

function throwNotFound(message: string): never {
  throw new MlaKvError("LIBRARY_NOT_FOUND", message);
}

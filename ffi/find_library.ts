/**
 * Finds and loads libmla_kv, choosing among the candidates by what they are.
 *
 *   1. `MLA_KV_LIBRARY` — an explicit path. When it is set it is the only candidate, loaded as it
 *      is: a user who points at a library must get that one or an error, never a silent fallback
 *      to another build that may differ.
 *   2. Otherwise the package's own `build/libmla_kv.so` (what `bun run build` makes) and
 *      `prebuilt/<platform>-<arch>/libmla_kv.so` (what the published package ships). Only one
 *      built from this package's CUDA sources is used; its build id, read from the file without
 *      loading it, says so. Between two such, the local build wins: someone built it on purpose
 *      (the fix for an old driver, or a build for this machine's GPUs only).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { join } from "node:path";
import { embeddedBuildId } from "./build_id.ts";
import { isPermissionError } from "./diagnose.ts";
import { MlaKvError } from "./errors.ts";
import type { LibraryAdapter, OpenedLibrary } from "./library_adapter.ts";
import { PACKAGE_ROOT } from "./package_root.ts";
import { cudaSourceHash } from "./source_hash.ts";

export { PACKAGE_ROOT };

/** Where a candidate path came from. */
export type CandidateSource = "MLA_KV_LIBRARY" | "build" | "prebuilt";

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

/** Where to look, in order of preference among libraries of this package's sources. */
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
    { path: `${packageRoot}/build/${file}`, source: "build" },
    { path: `${packageRoot}/prebuilt/${platform}-${arch}/${file}`, source: "prebuilt" },
  ];
}

const SOURCE_LABEL: Record<CandidateSource, string> = {
  MLA_KV_LIBRARY: "from MLA_KV_LIBRARY",
  build: "local build",
  prebuilt: "prebuilt for this platform",
};

/** Options of {@link openLibrary}; the defaults are the real environment and package. */
export interface OpenLibraryOptions {
  env?: Record<string, string | undefined>;
  packageRoot?: string;
  platform?: string;
  arch?: string;
  /** The hash of the package's CUDA sources; defaults to that of `<packageRoot>/cuda` (null: none there). */
  sourceHash?: string | null;
}

/** The library chosen, where it came from, and why it was chosen (for `libraryInfo()` and bug reports). */
export interface ChosenLibrary {
  readonly library: OpenedLibrary;
  readonly source: CandidateSource;
  readonly reason: string;
  /**
   * The hash of the package's CUDA sources the candidates were judged by, for the caller's own
   * check of the loaded library's build id (so the sources are hashed once per load); null when
   * no build id was compared: MLA_KV_LIBRARY is set, or there are no CUDA sources.
   */
  readonly sourceHash: string | null;
}

/** What one candidate turned out to be. */
type Verdict =
  | { kind: "missing" }
  | { kind: "stale" }
  | { kind: "failed"; buildId: string | null; error: string }
  | { kind: "passed-over"; buildId: string | null }
  | { kind: "loaded"; buildId: string | null; library: OpenedLibrary };

/**
 * Loads the package's library (see the module's doc for the choice). A candidate that exists but
 * fails to open (wrong architecture, not a library, a missing dependency) does not stop the
 * search, but its reason is kept: the final error says why each place was rejected.
 *
 * @throws {MlaKvError} `LIBRARY_NOT_FOUND` when no candidate loads, listing every path tried with
 * its reason; `ABI_MISMATCH` when the only libraries there are were built from other CUDA sources.
 */
export function openLibrary(adapter: LibraryAdapter, options: OpenLibraryOptions = {}): ChosenLibrary {
  const packageRoot = options.packageRoot ?? PACKAGE_ROOT;
  const candidates = libraryCandidates(
    options.env ?? process.env,
    packageRoot,
    options.platform ?? process.platform,
    options.arch ?? process.arch,
  );
  if (candidates[0]?.source === "MLA_KV_LIBRARY") return openExplicit(adapter, candidates[0], options.platform);

  const sourceHash = options.sourceHash !== undefined ? options.sourceHash : cudaSourceHash(join(packageRoot, "cuda"));
  const verdicts = new Map<LibraryCandidate, Verdict>();
  let chosen: LibraryCandidate | undefined;
  for (const candidate of candidates) {
    const verdict = judge(adapter, candidate, sourceHash, chosen === undefined);
    verdicts.set(candidate, verdict);
    if (verdict.kind === "loaded" && chosen === undefined) chosen = candidate;
  }
  if (chosen !== undefined) {
    const verdict = verdicts.get(chosen) as Extract<Verdict, { kind: "loaded" }>;
    return { library: verdict.library, source: chosen.source, reason: choiceReason(chosen, verdicts, sourceHash), sourceHash };
  }

  const tried = candidates.map((c) => `  - ${c.path} (${SOURCE_LABEL[c.source]}): ${describeVerdict(verdicts.get(c)!, sourceHash)}`);
  const onlyStale = [...verdicts.values()].every((v) => v.kind === "stale" || v.kind === "missing") &&
    [...verdicts.values()].some((v) => v.kind === "stale");
  if (onlyStale) {
    throw new MlaKvError(
      "ABI_MISMATCH",
      `libmla_kv is there, but not built from this package's CUDA sources (they hash to ${sourceHash}):\n${tried.join("\n")}\n` +
        `Fix: rebuild it with \`bun run build\` in ${packageRoot} (needs nvcc), reinstall the package, or set MLA_KV_LIBRARY to use a library as it is.`,
    );
  }
  throw new MlaKvError(
    "LIBRARY_NOT_FOUND",
    `libmla_kv could not be loaded (${adapter.runtime}). Tried:\n${tried.join("\n")}\n` +
      `Fix: run \`bun run build\` in ${packageRoot} (needs nvcc), or set MLA_KV_LIBRARY=/path/to/${libraryFileName(options.platform)}.`,
  );
}

function openExplicit(adapter: LibraryAdapter, candidate: LibraryCandidate, platform?: string): ChosenLibrary {
  const verdict = judge(adapter, candidate, null, true);
  if (verdict.kind === "loaded") {
    return {
      library: verdict.library,
      source: candidate.source,
      reason: "MLA_KV_LIBRARY is set, so that library is the only one used, as it is (its build id is not compared with this package's sources)",
      sourceHash: null,
    };
  }
  throw new MlaKvError(
    "LIBRARY_NOT_FOUND",
    `libmla_kv could not be loaded (${adapter.runtime}). Tried:\n  - ${candidate.path} (${SOURCE_LABEL[candidate.source]}): ${describeVerdict(verdict, null)}\n` +
      `Fix: point MLA_KV_LIBRARY at a libmla_kv built for this machine (${libraryFileName(platform)}), or unset it to use the package's own library.`,
  );
}

// `open`: whether to load it when it qualifies (false once another was chosen: it is only judged).
function judge(adapter: LibraryAdapter, candidate: LibraryCandidate, sourceHash: string | null, open: boolean): Verdict {
  if (!existsSync(candidate.path)) return { kind: "missing" };
  const buildId = sourceHash === null ? null : embeddedBuildId(candidate.path, sourceHash);
  if (sourceHash !== null && buildId === null) return { kind: "stale" };
  if (!open) return { kind: "passed-over", buildId };
  try {
    return { kind: "loaded", buildId, library: adapter.open(candidate.path) };
  } catch (error) {
    // A missing Deno permission is not this file's fault: it must reach the user as it is.
    if (isPermissionError(error)) throw error;
    return { kind: "failed", buildId, error: error instanceof Error ? error.message : String(error) };
  }
}

function describeVerdict(verdict: Verdict, sourceHash: string | null): string {
  switch (verdict.kind) {
    case "missing":
      return "no such file";
    case "stale":
      return `built from other CUDA sources (it holds no build id of this package's sources, ${sourceHash})`;
    case "failed":
      return `exists${verdict.buildId ? ` (${verdict.buildId})` : ""} but could not be loaded: ${verdict.error}`;
    case "passed-over":
    case "loaded":
      return `built from this package's CUDA sources${verdict.buildId ? ` (${verdict.buildId})` : ""}`;
  }
}

function choiceReason(chosen: LibraryCandidate, verdicts: Map<LibraryCandidate, Verdict>, sourceHash: string | null): string {
  const verdict = verdicts.get(chosen) as Extract<Verdict, { kind: "loaded" }>;
  const what = chosen.source === "build" ? "the local build" : "the prebuilt library";
  const parts = [
    sourceHash === null
      ? `${what}; this package has no CUDA sources to compare build ids with`
      : `${what}, built from this package's CUDA sources (${verdict.buildId})`,
  ];
  for (const [other, v] of verdicts) {
    if (other === chosen) continue;
    const where = other.source === "build" ? "the local build" : "the prebuilt library";
    if (v.kind === "missing") parts.push(`there is no ${other.source === "build" ? "local build" : "prebuilt library"}`);
    else if (v.kind === "stale") parts.push(`${where} (${other.path}) is built from other CUDA sources${other.source === "build" ? "; `bun run build` rebuilds it" : ""}`);
    // Only the local build, first in the list, can pass over another library.
    else if (v.kind === "passed-over") parts.push(`preferred to ${where}, of the same sources: a local build is made on purpose`);
    else if (v.kind === "failed") parts.push(`${where} (${other.path}) could not be loaded: ${v.error}`);
  }
  return parts.join("; ");
}

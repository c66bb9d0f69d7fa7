/**
 * A library's build id, "<sources hash>-<archs joined by '.'>" (cuda/include/mla_kv.h): how it is
 * made, read back and judged. It can be read from the library file itself, without loading it
 * (and so without starting CUDA), because the id is a plain NUL-terminated string in the file's
 * read-only data: the build and the loader both rank libraries that way.
 */
import { closeSync, openSync, readSync } from "node:fs";

/** The build id of a library built from sources hashing to `sourceHash` for `archs`. */
export function makeBuildId(sourceHash: string, archs: readonly string[]): string {
  return `${sourceHash}-${archs.join(".")}`;
}

/** The architectures a build id names (empty for an id not of this form, e.g. "dev"). */
export function buildIdArchs(buildId: string): string[] {
  const dash = buildId.indexOf("-");
  return dash < 0 ? [] : buildId.slice(dash + 1).split(".").filter(Boolean);
}

/**
 * The sources hash of a build id: what decides the machine code a given GPU runs. The architectures
 * a build holds do not change the code of any one of them (a single-architecture build of sm_90a
 * runs what the fat library runs on an H100), so profiles are keyed on this part alone.
 */
export function buildIdSourceHash(buildId: string): string {
  const dash = buildId.indexOf("-");
  return dash < 0 ? buildId : buildId.slice(0, dash);
}

/** True when a library with `buildId` was built from sources hashing to `sourceHash`. */
export function buildIdMatches(buildId: string, sourceHash: string): boolean {
  return buildId.startsWith(`${sourceHash}-`);
}

const CHUNK = 1 << 20;

/**
 * The build id of sources `sourceHash` embedded in the library at `path`, or null when the file
 * holds none (a library of other sources, or not a library). Reads the file in chunks; no code of
 * it runs.
 */
export function embeddedBuildId(path: string, sourceHash: string): string | null {
  const needle = Buffer.from(`${sourceHash}-`, "latin1");
  const fd = openSync(path, "r");
  try {
    // Each chunk keeps the tail of the one before, so an id split across two reads is still found.
    const keep = needle.length + 256;
    let carry = Buffer.alloc(0);
    const chunk = Buffer.alloc(CHUNK);
    for (;;) {
      const read = readSync(fd, chunk, 0, CHUNK, null);
      if (read === 0) return null;
      const window = Buffer.concat([carry, chunk.subarray(0, read)]);
      let at = window.indexOf(needle);
      while (at >= 0) {
        const end = window.indexOf(0, at);
        if (end < 0) break; // its end is in the next chunk
        const id = window.toString("latin1", at, end);
        if (/^[0-9a-f]{12}-[0-9a-z]+(\.[0-9a-z]+)*$/.test(id)) return id;
        at = window.indexOf(needle, at + 1);
      }
      carry = window.subarray(Math.max(0, window.length - keep));
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Why a library with `buildId` does not belong to sources hashing to `sourceHash`, or null when
 * it does (or when there are no sources to compare with, e.g. a trimmed install).
 */
export function buildIdMismatch(path: string, buildId: string, sourceHash: string | null): string | null {
  if (sourceHash === null || buildIdMatches(buildId, sourceHash)) return null;
  return (
    `${path} was built from other CUDA sources than this package's (its build id is ${buildId}; ` +
    `this package's cuda/ hashes to ${sourceHash}). Rebuild it with \`bun run build\`, reinstall the package, ` +
    "or set MLA_KV_LIBRARY to use a library of your choice as it is."
  );
}

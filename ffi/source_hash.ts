/**
 * The identity of the CUDA sources a library was built from: the first 12 hex digits of a SHA-256
 * over cuda/'s .cu, .cuh and .h files. `bun run build` puts it at the front of the library's build
 * id, and the loader compares it with the package's own cuda/. A library left over from another
 * version of the package then fails with a clear error instead of misbehaving.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The hash of the CUDA sources under `cudaDir`, or null when the folder is not there. */
export function cudaSourceHash(cudaDir: string): string | null {
  if (!existsSync(cudaDir)) return null;
  const hash = createHash("sha256");
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (/\.(cu|cuh|h)$/.test(entry.name)) hash.update(entry.name).update(readFileSync(path));
    }
  };
  walk(cudaDir);
  return hash.digest("hex").slice(0, 12);
}

/**
 * Why a library with `buildId` does not belong to sources hashing to `sourceHash`, or null when
 * it does (or when there are no sources to compare with, e.g. a trimmed install).
 */
export function buildIdMismatch(path: string, buildId: string, sourceHash: string | null): string | null {
  if (sourceHash === null || buildId.startsWith(`${sourceHash}-`)) return null;
  return (
    `${path} was built from other CUDA sources than this package's (its build id is ${buildId}; ` +
    `this package's cuda/ hashes to ${sourceHash}). Rebuild it with \`bun run build\`, reinstall the package, ` +
    "or set MLA_KV_LIBRARY to use a library of your choice as it is."
  );
}

/**
 * Where this package is: the folder holding its package.json, found by walking up from this
 * module. The same code runs from the TypeScript sources (`<root>/ffi/`) and from the compiled
 * modules the package ships for Deno (`<root>/dist/ffi/`), so nothing may assume how deep it
 * sits; everything that finds files of the package (the library, cuda/, bundled profiles) starts
 * from here.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The name in this package's package.json, which tells it apart from a project's own. */
export const PACKAGE_NAME = "mla-kv";

interface FoundPackage {
  readonly root: string;
  readonly version: string;
}

function readManifest(dir: string): { name?: unknown; version?: unknown } | null {
  try {
    return JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  } catch {
    return null; // no package.json here, or not readable (Deno without --allow-read)
  }
}

/** The nearest folder at or above `start` whose package.json names this package. */
export function findPackage(start: string): FoundPackage | null {
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = readManifest(dir);
    if (manifest?.name === PACKAGE_NAME) return { root: dir, version: String(manifest.version) };
    if (dirname(dir) === dir) return null;
  }
}

const HERE = dirname(fileURLToPath(import.meta.url));
// Found once, at import, and never failing: without read access the folder above this module
// stands in (right for the sources), and the library lookup then names the missing permission.
const FOUND = findPackage(HERE);

/** The package root: the folder holding this package's package.json. */
export const PACKAGE_ROOT: string = FOUND?.root ?? dirname(HERE);

/** This package's version, from its package.json ("unknown" when that could not be read). */
export const PACKAGE_VERSION: string = FOUND?.version ?? "unknown";

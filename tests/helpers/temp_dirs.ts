/**
 * Fresh temporary folders for one test file, all under one root that is removed after the file's
 * tests: `const freshDir = tempDirs("mla-kv-store-")`, then `freshDir()` per test.
 */
import { afterAll } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * The variable naming the temporary folder the test run started with (tests/setup.ts points
 * TMPDIR into a folder of the run's own, removed at exit): for what is kept between runs.
 */
export const SHARED_TMPDIR_ENV = "MLA_KV_TEST_SHARED_TMPDIR";

export function tempDirs(prefix: string): () => string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let seq = 0;
  return () => {
    const dir = join(root, `d${seq++}`);
    mkdirSync(dir);
    return dir;
  };
}

/**
 * Preloaded before every test file (bunfig.toml). One temporary folder holds everything the run
 * writes: TMPDIR points into it, so every folder a test (or a child process it starts) makes
 * with tmpdir() lands there, and it is removed after the last test. Profiles that tests tune or
 * write go to a cache dir inside it, never the user's ~/.cache/mla-kv, and first-use tuning
 * stays quiet. The host fixture library is the one thing kept between runs: it is built into
 * SHARED_TMPDIR_ENV's folder, the temporary folder the run started with.
 */
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHARED_TMPDIR_ENV } from "./helpers/temp_dirs.ts";

process.env[SHARED_TMPDIR_ENV] ??= tmpdir();
const runRoot = mkdtempSync(join(process.env[SHARED_TMPDIR_ENV], "mla-kv-test-run-"));
process.env.TMPDIR = runRoot;
// A hook registered here runs once, after the last test file.
afterAll(() => rmSync(runRoot, { recursive: true, force: true }));

process.env.MLA_KV_CACHE_DIR ??= join(runRoot, "cache");
process.env.MLA_KV_QUIET ??= "1";

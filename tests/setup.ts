/**
 * Preloaded before every test file (bunfig.toml): profiles that tests tune or write go to a fresh
 * temporary cache dir, never the user's ~/.cache/mla-kv, and first-use tuning stays quiet.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

process.env.MLA_KV_CACHE_DIR ??= mkdtempSync(join(tmpdir(), "mla-kv-test-cache-"));
process.env.MLA_KV_QUIET ??= "1";

import { describe, expect, it } from "bun:test";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { profilePath } from "../../autotune/cache_dir.ts";
import { ProfileLookup } from "../../autotune/lookup.ts";
import { LayoutProfileSchema } from "../../autotune/profile.ts";
import { userProfileStore } from "../../cli/autotune_store.ts";
import { fakeLayoutProfile, h100 } from "../autotune/fixtures/fake.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";

const freshDir = tempDirs("mla-kv-cli-store-");

describe("the user profile store", () => {
  const me = h100();
  const key = "1024+128/i64";

  it("saves into MLA_KV_CACHE_DIR and finds it there afterwards", () => {
    const cache = join(freshDir(), "cache");
    const warnings: string[] = [];
    const store = userProfileStore({ MLA_KV_CACHE_DIR: cache }, (l) => warnings.push(l), new ProfileLookup({ bundledDir: freshDir() }));
    expect(store.existing(me, key)).toBeNull();
    const layout = fakeLayoutProfile(2, 16);
    const where = store.whileTuning!(me, key, () => store.save(me, key, layout));
    expect(where).toBe(profilePath(cache, me));
    expect(existsSync(where)).toBe(true);
    expect(readdirSync(cache).filter((n) => n.endsWith(".lock"))).toEqual([]);
    const again = userProfileStore({ MLA_KV_CACHE_DIR: cache }, (l) => warnings.push(l), new ProfileLookup({ bundledDir: freshDir() }));
    expect(LayoutProfileSchema.parse(again.existing(me, key))).toEqual(layout);
    expect(warnings).toEqual([]);
  });

  it("throws, saying why, when the profile cannot be written", () => {
    const file = join(freshDir(), "not-a-dir");
    writeFileSync(file, "x");
    const store = userProfileStore({ MLA_KV_CACHE_DIR: file }, () => {}, new ProfileLookup({ bundledDir: freshDir() }));
    expect(() => store.save(me, key, fakeLayoutProfile())).toThrow(/unwritable/);
    // No lock can be taken there either; the tune still runs.
    expect(store.whileTuning!(me, key, () => 42)).toBe(42);
  });
});

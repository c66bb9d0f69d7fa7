import { describe, expect, it } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { SASS_ARCHS } from "../../scripts/build.ts";
import { unshippable } from "../../scripts/pack.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";

const freshDir = tempDirs("mla-kv-pack-");
const HASH = "0123456789ab";

/** A stand-in library file holding build id `id` as a real one does. */
function libraryWith(id: string): string {
  const path = join(freshDir(), "libmla_kv.so");
  writeFileSync(path, `\x7fELF\0\0${id}\0\x01\x02`, "latin1");
  return path;
}

describe("unshippable", () => {
  it("lets through a library of these sources built for every architecture", () => {
    expect(unshippable(libraryWith(`${HASH}-${SASS_ARCHS.join(".")}`), HASH)).toBeNull();
  });

  it("refuses a single-architecture build, naming what it lacks", () => {
    const path = libraryWith(`${HASH}-90a`);
    expect(unshippable(path, HASH)).toBe(`${path} (${HASH}-90a) lacks sm_75, sm_80, sm_86, sm_89, sm_100a, sm_103a, sm_120: the package ships every architecture`);
  });

  it("refuses a library built from other sources", () => {
    const path = libraryWith(`fedcba987654-${SASS_ARCHS.join(".")}`);
    expect(unshippable(path, HASH)).toBe(`${path} holds no build id of these CUDA sources (${HASH}): it is stale`);
  });
});

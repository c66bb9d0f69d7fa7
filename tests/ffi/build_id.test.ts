import { describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildIdArchs, buildIdMatches, buildIdMismatch, embeddedBuildId, makeBuildId } from "../../ffi/build_id.ts";
import { PACKAGE_ROOT } from "../../ffi/package_root.ts";
import { cudaSourceHash } from "../../ffi/source_hash.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";

const freshDir = tempDirs("mla-kv-build-id-");
const HASH = "0123456789ab";

/** A file of `length` random bytes with `insert` at byte `at`. */
function fileWith(insert: string, at: number, length: number): string {
  const bytes = randomBytes(length);
  const path = join(freshDir(), "libmla_kv.so");
  writeFileSync(path, Buffer.concat([bytes.subarray(0, at), Buffer.from(insert, "latin1"), bytes.subarray(at)]));
  return path;
}

describe("build ids", () => {
  it("are the sources' hash and the architectures joined by dots, and read back the same", () => {
    const id = makeBuildId(HASH, ["75", "90a", "120"]);
    expect(id).toBe("0123456789ab-75.90a.120");
    expect(buildIdArchs(id)).toEqual(["75", "90a", "120"]);
    expect(buildIdArchs("dev")).toEqual([]);
  });

  it("match the sources whose hash they start with, whatever the architectures", () => {
    expect(buildIdMatches(`${HASH}-90a`, HASH)).toBe(true);
    expect(buildIdMatches(`${HASH}-75.80.90a`, HASH)).toBe(true);
    expect(buildIdMatches(`ffffffffffff-90a`, HASH)).toBe(false);
    expect(buildIdMatches(HASH, HASH)).toBe(false);
  });
});

describe("embeddedBuildId", () => {
  it("finds the id of these sources in a library file, NUL-terminated, among other bytes", () => {
    expect(embeddedBuildId(fileWith(`\0${HASH}-75.80.90a\0`, 5000, 100_000), HASH)).toBe(`${HASH}-75.80.90a`);
  });

  it("finds an id that straddles two of the chunks the file is read in", () => {
    const id = `${HASH}-75.80.86.89.90a.100a.103a.120`;
    for (const at of [(1 << 20) - 5, (1 << 20) - 20, (1 << 20) - id.length]) {
      expect(embeddedBuildId(fileWith(`\0${id}\0`, at, 3 << 20), HASH)).toBe(id);
    }
  });

  it("is null for a library of other sources and for a file with no id", () => {
    expect(embeddedBuildId(fileWith(`\0fedcba987654-90a\0`, 100, 10_000), HASH)).toBeNull();
    expect(embeddedBuildId(fileWith("", 0, 10_000), HASH)).toBeNull();
  });

  it("skips the hash where it is not an id (followed by something other than architectures)", () => {
    expect(embeddedBuildId(fileWith(`\0${HASH}-not an id\0 \0${HASH}-90a\0`, 100, 10_000), HASH)).toBe(`${HASH}-90a`);
  });

  const built = join(PACKAGE_ROOT, "build", "libmla_kv.so");
  it.skipIf(!existsSync(built))(`reads from build/libmla_kv.so the id the loaded library reports${existsSync(built) ? "" : " (skipped: not built)"}`, () => {
    const result = runInChild(`return m.libraryInfo().buildId;`, {});
    expect(result.value, describeChild(result)).toBe(embeddedBuildId(built, cudaSourceHash(join(PACKAGE_ROOT, "cuda"))!));
  });
});

describe("buildIdMismatch", () => {
  it("accepts a build id that starts with the sources' hash, whatever the architectures", () => {
    expect(buildIdMismatch("/l.so", "0123456789ab-75.80.90a", "0123456789ab")).toBeNull();
    expect(buildIdMismatch("/l.so", "0123456789ab-90a", "0123456789ab")).toBeNull();
  });

  it("names the library, both ids and the fixes when the sources differ", () => {
    const message = buildIdMismatch("/pkg/prebuilt/linux-x64/libmla_kv.so", "ffffffffffff-90a", "0123456789ab");
    expect(message).toContain("/pkg/prebuilt/linux-x64/libmla_kv.so was built from other CUDA sources");
    expect(message).toContain("ffffffffffff-90a");
    expect(message).toContain("0123456789ab");
    expect(message).toContain("bun run build");
    expect(message).toContain("MLA_KV_LIBRARY");
  });

  it("cannot compare, and so accepts, when the package has no CUDA sources", () => {
    expect(buildIdMismatch("/l.so", "anything", null)).toBeNull();
  });
});

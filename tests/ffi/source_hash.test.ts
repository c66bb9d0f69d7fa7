import { describe, expect, it } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../../ffi/find_library.ts";
import { buildIdMismatch, cudaSourceHash } from "../../ffi/source_hash.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

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

describe("cudaSourceHash", () => {
  it("is 12 hex digits for the package's cuda/ folder and null for a missing one", () => {
    expect(cudaSourceHash(join(PACKAGE_ROOT, "cuda"))).toMatch(/^[0-9a-f]{12}$/);
    expect(cudaSourceHash(join(PACKAGE_ROOT, "no-such-folder"))).toBeNull();
  });

  const built = join(PACKAGE_ROOT, "build", "libmla_kv.so");
  it.skipIf(!existsSync(built))(`matches the build id of the library \`bun run build\` made${existsSync(built) ? "" : " (skipped: not built)"}`, () => {
    const result = runInChild(`return m.libraryInfo().buildId;`, {});
    expect(String(result.value), describeChild(result)).toStartWith(`${cudaSourceHash(join(PACKAGE_ROOT, "cuda"))}-`);
  });
});

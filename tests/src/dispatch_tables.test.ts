import { describe, expect, it } from "bun:test";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

const host = hostLibrary();
describe.skipIf(!host)(`tableFor against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const body = (layout: string) => `
    const { tableFor } = await import(root + "/src/dispatch_tables.ts");
    const { builtinTable } = await import(root + "/src/dispatch.ts");
    const a = tableFor(0, ${layout});
    const b = tableFor(0, ${layout});
    const other = tableFor(0, { nopeBytes: 512, ropeBytes: 144, locBytes: 4 });
    return { cached: a === b, perLayout: a !== other, sameAsBuiltin: JSON.stringify(a) === JSON.stringify(builtinTable(m.deviceInfo(0).computeCapability[0])), lastPath: a[17].best.path };
  `;

  it("serves the built-in rule for the GPU's architecture, cached per device and layout", () => {
    const result = runInChild(body(`{ nopeBytes: 1024, ropeBytes: 128, locBytes: 8 }`), { MLA_KV_LIBRARY: host! });
    expect(result.value, describeChild(result)).toEqual({ cached: true, perLayout: true, sameAsBuiltin: true, lastPath: "tma" });
  });

  it("follows the compute capability the device reports", () => {
    const result = runInChild(body(`{ nopeBytes: 1024, ropeBytes: 128, locBytes: 8 }`), { MLA_KV_LIBRARY: host!, HOST_MLA_KV_CC_MAJOR: "8" });
    expect((result.value as { lastPath: string }).lastPath, describeChild(result)).toBe("vector");
  });
});

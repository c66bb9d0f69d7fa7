/**
 * The README's example where it cannot run: exit 3 and the real cause when there is no usable
 * GPU, exit 1 and the whole message (every path tried, with its reason) for a missing library.
 */
import { describe, expect, it } from "bun:test";
import { hostLibrary } from "../helpers/host_library.ts";
import { runScript } from "../helpers/run_in_child.ts";

const example = (env: Record<string, string>) => runScript("examples/write_rows.ts", [], env);

const host = hostLibrary();
describe.skipIf(!host)(`the example without a usable GPU${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  it("exits 3 and says the driver sees no GPU", () => {
    const run = example({ MLA_KV_LIBRARY: host!, HOST_MLA_KV_DEVICE_COUNT: "0" });
    expect(run.code, run.out).toBe(3);
    expect(run.out).toBe("example: no usable NVIDIA GPU here: the NVIDIA driver (CUDA 13.0) is installed but sees no GPU; check nvidia-smi, and that this container or VM is given the GPU\n");
  });

  it("exits 3 and says no driver is installed", () => {
    const run = example({ MLA_KV_LIBRARY: host!, HOST_MLA_KV_DRIVER_VERSION: "0" });
    expect(run.code, run.out).toBe(3);
    expect(run.out).toStartWith("example: no usable NVIDIA GPU here: mla_kv_device_count failed: no NVIDIA driver is installed on this machine");
  });
});

describe("the example without its library", () => {
  it("exits 1 with every path tried and its reason, not a cut-off first line", () => {
    const run = example({ MLA_KV_LIBRARY: "/nonexistent/libmla_kv.so" });
    expect(run.code, run.out).toBe(1);
    expect(run.out).toContain("example: cannot start: LIBRARY_NOT_FOUND: libmla_kv could not be loaded (bun). Tried:\n  - /nonexistent/libmla_kv.so (from MLA_KV_LIBRARY): no such file\nFix: ");
    expect(run.out).not.toContain("    at ");
  });
});

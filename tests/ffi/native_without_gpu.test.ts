/**
 * The real libmla_kv on a machine with no usable GPU must fail every call with a readable
 * MlaKvError, never crash. Each case runs in a child process, so a crash fails the test.
 */
import { MLA_KV_ABI_VERSION } from "../../ffi/abi.ts";
import { describe, expect, it } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { embeddedBuildId } from "../../ffi/build_id.ts";
import { libraryCandidates, PACKAGE_ROOT } from "../../ffi/find_library.ts";
import { cudaSourceHash } from "../../ffi/source_hash.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

// The library the package itself would load (MLA_KV_LIBRARY aside): the first candidate built from
// the package's sources.
const sourceHash = cudaSourceHash(join(PACKAGE_ROOT, "cuda"))!;
const library = libraryCandidates({}).find((c) => existsSync(c.path) && embeddedBuildId(c.path, sourceHash) !== null)?.path;
const gpuVisible = existsSync("/dev/nvidiactl") || existsSync("/proc/driver/nvidia");

const reason = !library
  ? " (skipped: libmla_kv is not built from these sources; run `bun run build`)"
  : gpuVisible
    ? " (skipped: an NVIDIA driver is present, so this is not a machine without a GPU)"
    : "";

describe.skipIf(!library || gpuVisible)(`the built libmla_kv on a machine without a GPU${reason}`, () => {
  const expectNoDevice = (body: string) => {
    const result = runInChild(body);
    expect(result.exitCode, describeChild(result)).toBe(0);
    expect(result.signal).toBeNull();
    expect(result.error?.name, describeChild(result)).toBe("MlaKvError");
    expect(result.error?.code).toBe("NO_DEVICE");
    return result.error!;
  };

  it("loads and reports its ABI version and build id", () => {
    const result = runInChild(`return m.libraryInfo();`);
    expect(result.value, describeChild(result)).toMatchObject({ path: library, abiVersion: MLA_KV_ABI_VERSION });
    expect((result.value as { buildId: string }).buildId.length).toBeGreaterThan(0);
  });

  it("answers deviceCount() with NO_DEVICE and the real cause: no driver is installed", () => {
    const error = expectNoDevice(`return m.deviceCount();`);
    expect(error.message).toStartWith("mla_kv_device_count failed: no NVIDIA driver is installed on this machine");
    expect(error.message).toContain("which needs driver R580 or newer");
  });

  it("says why this library was chosen", () => {
    const result = runInChild(`return m.libraryInfo().reason;`);
    expect(String(result.value), describeChild(result)).toMatch(/^the (local build|prebuilt library), built from this package's CUDA sources \(/);
  });

  it("answers deviceInfo() with NO_DEVICE", () => {
    expectNoDevice(`return m.deviceInfo(0);`);
  });

  it("answers allocTensor() with NO_DEVICE", () => {
    expectNoDevice(`return m.allocTensor("bf16", [4, 576]);`);
  });

  it("answers Stream.create() and Event.create() with NO_DEVICE, blaming no argument when none was passed", () => {
    expect(expectNoDevice(`return m.Stream.create();`).argument).toBeUndefined();
    expect(expectNoDevice(`return m.Event.create();`).argument).toBeUndefined();
    expect(expectNoDevice(`return m.Stream.create(0);`).argument).toBe("device");
  });

  it("answers setMlaKvBuffer with NO_DEVICE before touching the (fake) addresses, with automatic dispatch", () => {
    expectNoDevice(`
      const w = (dtype, shape, slot) => m.wrapDevicePointer({ ptr: 0x7f0000000000 + slot * 0x10000000, dtype, shape });
      m.setMlaKvBuffer(w("bf16", [64, 576], 0), w("i64", [2], 1), w("bf16", [2, 512], 2), w("bf16", [2, 64], 3));
    `);
  });

  it("answers setMlaKvBuffer with NO_DEVICE when the configuration is forced", () => {
    expectNoDevice(`
      const w = (dtype, shape, slot) => m.wrapDevicePointer({ ptr: 0x7f0000000000 + slot * 0x10000000, dtype, shape });
      m.setMlaKvBuffer(w("bf16", [64, 576], 0), w("i64", [2], 1), w("bf16", [2, 512], 2), w("bf16", [2, 64], 3), { path: "vector", warps: 4, rowsPerWarp: 1 });
    `);
  });

  it("answers checkErrors() with NO_DEVICE", () => {
    expectNoDevice(`m.checkErrors();`);
  });
});

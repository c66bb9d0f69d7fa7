import { describe, expect, it } from "bun:test";
import { supportsPath } from "../../src/device.ts";
import { MlaKvError } from "../../ffi/errors.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

describe("supportsPath", () => {
  it("refuses a path name it does not know, before asking the GPU", () => {
    expect(() => supportsPath(0, "warp" as never)).toThrow(MlaKvError);
    expect(() => supportsPath(0, "constructor" as never)).toThrow('path: expected one of "vector", "tma", "specialized", "spread", got "constructor"');
    expect(() => supportsPath(0, "auto" as never)).toThrow(MlaKvError);
  });
});

const host = hostLibrary();
describe.skipIf(!host)(`devices against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const env = { MLA_KV_LIBRARY: host! };

  it("counts the visible devices", () => {
    const result = runInChild(`return m.deviceCount();`, env);
    expect(result.value, describeChild(result)).toBe(1);
  });

  it("reads every property of a device, including 64-bit sizes", () => {
    const result = runInChild(`return m.deviceInfo(0);`, env);
    expect(result.value, describeChild(result)).toEqual({
      index: 0,
      name: "Host Fixture GPU",
      computeCapability: [9, 0],
      smCount: 132,
      l2Bytes: 52428800,
      smemPerBlockOptin: 232448,
      totalMemory: 85899345920,
      driverVersion: 13000,
      runtimeVersion: 12080,
    });
  });

  it("reads a device's properties once and then answers from its cache", () => {
    const result = runInChild(`return m.deviceInfo(0) === m.deviceInfo(0);`, env);
    expect(result.value, describeChild(result)).toBe(true);
  });

  it("says TMA runs on sm_90 and not on sm_80, and the three register designs run on both", () => {
    const body = `return ["vector", "tma", "specialized", "spread"].map((p) => m.supportsPath(0, p));`;
    const hopper = runInChild(body, env);
    const ampere = runInChild(body, { ...env, HOST_MLA_KV_CC_MAJOR: "8" });
    expect(hopper.value, describeChild(hopper)).toEqual([true, true, true, true]);
    expect(ampere.value, describeChild(ampere)).toEqual([true, false, true, true]);
  });

  it("gives eligibility the compute capability and the opt-in shared memory the device reports, read once", () => {
    const result = runInChild(`
      const { deviceFacts } = await import(root + "/src/device.ts");
      const facts = deviceFacts(m.deviceInfo(0).index);
      return { facts, cached: facts === deviceFacts(0), frozen: Object.isFrozen(facts) };
    `, { ...env, HOST_MLA_KV_CC_MAJOR: "10", HOST_MLA_KV_SMEM_OPTIN: "101376" });
    expect(result.value, describeChild(result)).toEqual({ facts: { ccMajor: 10, smemPerBlockOptin: 101376 }, cached: true, frozen: true });
  });

  it("reads the free memory the device reports, a 64-bit size", () => {
    const result = runInChild(`
      const { deviceFreeMemory } = await import(root + "/src/device.ts");
      return [deviceFreeMemory(m.deviceInfo(0).index), deviceFreeMemory()];
    `, env);
    expect(result.value, describeChild(result)).toEqual([42949672960, 42949672960]);
  });

  it("turns a device index that does not exist into NO_DEVICE with the library's message", () => {
    const result = runInChild(`return m.deviceInfo(3);`, env);
    expect(result.error?.code, describeChild(result)).toBe("NO_DEVICE");
    expect(result.error?.argument).toBe("device");
    expect(result.error?.message).toContain("host fixture: only device 0 exists");
  });
});

describe.skipIf(!host)(`why no GPU can be used, against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const env = { MLA_KV_LIBRARY: host! };
  const noDriver = { ...env, HOST_MLA_KV_DRIVER_VERSION: "0" };
  const oldDriver = { ...env, HOST_MLA_KV_DRIVER_VERSION: "11080" };
  const noGpu = { ...env, HOST_MLA_KV_DEVICE_COUNT: "0" };

  it("finds no problem when device 0 is there", () => {
    const result = runInChild(`return m.gpuProblem(0);`, env);
    expect(result.value, describeChild(result)).toBeNull();
  });

  it("says no driver is installed, not that the driver is insufficient as CUDA has it", () => {
    const result = runInChild(`const p = m.gpuProblem(); return { code: p.code, message: p.message };`, noDriver);
    expect(result.value, describeChild(result)).toMatchObject({ code: "NO_DEVICE" });
    const message = (result.value as { message: string }).message;
    expect(message).toStartWith("mla_kv_device_count failed: no NVIDIA driver is installed on this machine");
    expect(message).toContain("CUDA said: cudaGetDeviceCount failed: CUDA driver version is insufficient");
  });

  it("names the old driver's version, the runtime's and the driver branch needed", () => {
    const result = runInChild(`return m.gpuProblem().message;`, oldDriver);
    expect(String(result.value), describeChild(result)).toContain(
      "the NVIDIA driver (CUDA 11.8) is older than the CUDA 12.8 runtime libmla_kv links: install driver R525 or newer",
    );
  });

  it("says the driver sees no GPU and points at CUDA_VISIBLE_DEVICES when it is set", () => {
    const result = runInChild(`return m.gpuProblem().message;`, { ...noGpu, CUDA_VISIBLE_DEVICES: "" });
    expect(result.value, describeChild(result)).toBe(
      'the NVIDIA driver (CUDA 13.0) is installed but sees no GPU; CUDA_VISIBLE_DEVICES="" may hide them: unset it or name a GPU that exists',
    );
  });

  it("says a device index does not exist when others do", () => {
    const result = runInChild(`return m.gpuProblem(2).message;`, env);
    expect(result.value, describeChild(result)).toBe("device 2 does not exist (1 visible)");
  });

  it("returns a missing library as the problem, with every path tried", () => {
    const result = runInChild(`const p = m.gpuProblem(); return { code: p.code, message: p.message };`, { MLA_KV_LIBRARY: "/nonexistent/libmla_kv.so" });
    expect(result.value, describeChild(result)).toEqual({
      code: "LIBRARY_NOT_FOUND",
      message: expect.stringContaining("/nonexistent/libmla_kv.so (from MLA_KV_LIBRARY): no such file"),
    });
  });

  it("gives Stream.create() the same cause as deviceCount()", () => {
    const result = runInChild(`return m.Stream.create();`, noGpu);
    expect(result.error?.code, describeChild(result)).toBe("NO_DEVICE");
    expect(result.error?.message).toStartWith("mla_kv_stream_create failed: the NVIDIA driver (CUDA 13.0) is installed but sees no GPU; check nvidia-smi");
    expect(result.error?.message).toContain("(CUDA said: no CUDA device is visible (the driver found no GPU))");
  });

  it("keeps the library's message for a device index that does not exist", () => {
    const result = runInChild(`return m.Stream.create(1);`, env);
    expect(result.error?.message, describeChild(result)).toBe("mla_kv_stream_create failed: host fixture: only device 0 exists");
  });
});

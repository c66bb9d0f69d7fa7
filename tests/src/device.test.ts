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

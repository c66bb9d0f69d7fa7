import { describe, expect, it } from "bun:test";
import { supportsPath } from "../../src/device.ts";
import { MlaKvError } from "../../ffi/errors.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

describe("supportsPath", () => {
  it("refuses a path name it does not know, before asking the GPU", () => {
    expect(() => supportsPath(0, "warp" as never)).toThrow(MlaKvError);
    expect(() => supportsPath(0, "constructor" as never)).toThrow('path: expected "vector" or "tma", got "constructor"');
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

  it("says TMA runs on sm_90 and not on sm_80, and vector runs on both", () => {
    const hopper = runInChild(`return [m.supportsPath(0, "tma"), m.supportsPath(0, "vector")];`, env);
    const ampere = runInChild(`return [m.supportsPath(0, "tma"), m.supportsPath(0, "vector")];`, { ...env, HOST_MLA_KV_CC_MAJOR: "8" });
    expect(hopper.value, describeChild(hopper)).toEqual([true, true]);
    expect(ampere.value, describeChild(ampere)).toEqual([false, true]);
  });

  it("turns a device index that does not exist into NO_DEVICE with the library's message", () => {
    const result = runInChild(`return m.deviceInfo(3);`, env);
    expect(result.error?.code, describeChild(result)).toBe("NO_DEVICE");
    expect(result.error?.argument).toBe("device");
    expect(result.error?.message).toContain("host fixture: only device 0 exists");
  });
});

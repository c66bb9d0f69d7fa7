/**
 * What the GPUs can do: count, properties, and whether a write path runs on them.
 *
 * @module
 */

import { diagnoseNoDevice } from "../ffi/diagnose.ts";
import { check, native } from "../ffi/native.ts";
import {
  MLA_KV_PATH_CODES,
  MLA_KV_PROP_CC_MAJOR,
  MLA_KV_PROP_CC_MINOR,
  MLA_KV_PROP_DRIVER_VERSION,
  MLA_KV_PROP_FREE_MEMORY,
  MLA_KV_PROP_L2_BYTES,
  MLA_KV_PROP_RUNTIME_VERSION,
  MLA_KV_PROP_SMEM_PER_BLOCK_OPTIN,
  MLA_KV_PROP_SM_COUNT,
  MLA_KV_PROP_TOTAL_MEMORY,
} from "../ffi/abi.ts";
import type { DeviceFacts } from "./eligibility.ts";
import { PATHS, type Path } from "./vocabulary.ts";
import { describeValue, invalidArgument, MlaKvError } from "../ffi/errors.ts";
import { validateDevice } from "./validate.ts";

/** Properties of one GPU. */
export interface DeviceInfo {
  readonly index: number;
  /** e.g. "NVIDIA H100 80GB HBM3". */
  readonly name: string;
  /** [major, minor], e.g. [9, 0] for Hopper. */
  readonly computeCapability: readonly [number, number];
  readonly smCount: number;
  readonly l2Bytes: number;
  /** Shared memory a block may opt into. */
  readonly smemPerBlockOptin: number;
  readonly totalMemory: number;
  /** e.g. 13000 for CUDA 13.0. */
  readonly driverVersion: number;
  /** Version of the CUDA runtime linked into libmla_kv. */
  readonly runtimeVersion: number;
}

/**
 * The number of visible CUDA devices (0 when a driver is installed but no GPU is visible).
 *
 * @throws {MlaKvError} `NO_DEVICE` when there is no usable CUDA driver; `LIBRARY_NOT_FOUND`.
 */
export function deviceCount(): number {
  const out = new Int32Array(1);
  check(native().mla_kv_device_count(out), "mla_kv_device_count");
  return out[0]!;
}

/**
 * Why GPU `device` cannot be used here, or null when it can: the library's error (a missing or
 * stale library, a missing Deno permission) or a `NO_DEVICE` error that names the real cause (no
 * driver, a driver older than the runtime linked in, no GPU visible, no such device). Never
 * throws an MlaKvError; the example, the benchmark and the commands start with it.
 */
export function gpuProblem(device = 0): MlaKvError | null {
  let count: number;
  try {
    count = deviceCount();
  } catch (error) {
    if (error instanceof MlaKvError) return error;
    throw error;
  }
  if (count > device) return null;
  if (count === 0) {
    const cause = diagnoseNoDevice(native(), "");
    return new MlaKvError("NO_DEVICE", cause ?? "the NVIDIA driver reports no GPU", "device");
  }
  return new MlaKvError("NO_DEVICE", `device ${device} does not exist (${count} visible)`, "device");
}

// Properties do not change while a process runs, and the dispatcher reads them on every write.
const infoCache = new Map<number, DeviceInfo>();

function property(device: number, prop: number, out: BigInt64Array): number {
  check(native().mla_kv_device_property(device, prop, out), "mla_kv_device_property", "device");
  return Number(out[0]);
}

/**
 * Properties of `device`, read once and cached.
 *
 * @throws {MlaKvError} `NO_DEVICE` when the device does not exist or there is no driver.
 */
export function deviceInfo(device = 0): DeviceInfo {
  const cached = infoCache.get(device);
  if (cached !== undefined) return cached;
  validateDevice(device, "device");
  const out = new BigInt64Array(1);
  const nameBuffer = new Uint8Array(256);
  check(native().mla_kv_device_name(device, nameBuffer, nameBuffer.length), "mla_kv_device_name", "device");
  const end = nameBuffer.indexOf(0);
  const info: DeviceInfo = Object.freeze({
    index: device,
    name: new TextDecoder().decode(nameBuffer.subarray(0, end < 0 ? nameBuffer.length : end)),
    computeCapability: Object.freeze([property(device, MLA_KV_PROP_CC_MAJOR, out), property(device, MLA_KV_PROP_CC_MINOR, out)]) as readonly [number, number],
    smCount: property(device, MLA_KV_PROP_SM_COUNT, out),
    l2Bytes: property(device, MLA_KV_PROP_L2_BYTES, out),
    smemPerBlockOptin: property(device, MLA_KV_PROP_SMEM_PER_BLOCK_OPTIN, out),
    totalMemory: property(device, MLA_KV_PROP_TOTAL_MEMORY, out),
    driverVersion: property(device, MLA_KV_PROP_DRIVER_VERSION, out),
    runtimeVersion: property(device, MLA_KV_PROP_RUNTIME_VERSION, out),
  });
  infoCache.set(device, info);
  return info;
}

/** Bytes free on `device` now (read every time: it changes). */
export function deviceFreeMemory(device = 0): number {
  validateDevice(device, "device");
  const out = new BigInt64Array(1);
  return property(device, MLA_KV_PROP_FREE_MEMORY, out);
}

// Indexed by device without building a key: setMlaKvBuffer asks on every call.
const factsCache: (DeviceFacts | undefined)[] = [];

/** What path eligibility needs to know about `device` (eligibility.ts), read once with deviceInfo. */
export function deviceFacts(device: number): DeviceFacts {
  const cached = factsCache[device];
  if (cached !== undefined) return cached;
  const info = deviceInfo(device);
  const facts: DeviceFacts = Object.freeze({ ccMajor: info.computeCapability[0], smemPerBlockOptin: info.smemPerBlockOptin });
  factsCache[device] = facts;
  return facts;
}

// Cached like deviceInfo.
const supportCache = new Map<string, boolean>();

/** True when `device` can run `path` for some write (the TMA path needs sm_90 or newer). Cached. */
export function supportsPath(device: number, path: Path): boolean {
  const code = Object.hasOwn(MLA_KV_PATH_CODES, path) ? MLA_KV_PATH_CODES[path] : undefined;
  if (code === undefined) {
    throw invalidArgument("path", `expected one of ${PATHS.map((p) => `"${p}"`).join(", ")}, got ${describeValue(path)}`);
  }
  const key = `${device}:${path}`;
  const cached = supportCache.get(key);
  if (cached !== undefined) return cached;
  validateDevice(device, "device");
  const out = new Int32Array(1);
  check(native().mla_kv_path_supported(device, code, out), "mla_kv_path_supported", "device");
  const supported = out[0] === 1;
  supportCache.set(key, supported);
  return supported;
}

/** The oldest architecture the library carries code for (SASS for sm_75; nothing older). */
export const MIN_COMPUTE_CAPABILITY: readonly [number, number] = [7, 5];

const archChecked: boolean[] = [];

/**
 * Throws `UNSUPPORTED` when `device` is older than sm_75, for which the library has no code: the
 * write would otherwise fail at launch with a CUDA error that does not say why. Cached per device.
 */
export function requireSupportedArchitecture(device: number): void {
  if (archChecked[device]) return;
  const info = deviceInfo(device);
  const [major, minor] = info.computeCapability;
  if (major * 10 + minor < MIN_COMPUTE_CAPABILITY[0] * 10 + MIN_COMPUTE_CAPABILITY[1]) {
    throw new MlaKvError(
      "UNSUPPORTED",
      `device ${device} (${info.name}) is sm_${major}${minor}; mla-kv's library runs on sm_75 (Turing) and newer`,
      "device",
    );
  }
  archChecked[device] = true;
}

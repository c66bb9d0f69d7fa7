/**
 * The GPU side of `bun run autotune`: which GPUs there are (with the identity their profiles are
 * keyed by) and a timing function per (device, layout). The command takes it as a dependency, so
 * its parsing, search and output run and are tested without a GPU.
 */
import { MlaKvError } from "../ffi/errors.ts";
import { deviceCount, deviceInfo } from "../src/device.ts";
import type { WriteLayout } from "../src/layout_key.ts";
import { gpuIdentity } from "../autotune/identity.ts";
import type { GpuIdentity } from "../autotune/profile.ts";
import { deviceTuner, type DeviceTuner } from "../autotune/tune.ts";
import { firstLine } from "./usage.ts";

export interface GpuInfo {
  /** The CUDA device index. */
  index: number;
  name: string;
  identity: GpuIdentity;
}

/** What a tune of one layout on one GPU runs on: the timing, the designs that can run, PDL, buckets. */
export type Tuner = Omit<DeviceTuner, "free">;

/** Why no GPU can be used: `noGpu` when the library works but finds none (no driver, no device). */
export interface NoGpus {
  error: string;
  noGpu?: boolean;
}

/** What the command needs from the GPUs. */
export interface GpuSide {
  /** The GPUs there are, or why none can be used. */
  gpus(): GpuInfo[] | NoGpus;
  /** The tuner of one layout on one device: its timing (µs per call, a best-of-several) and space. */
  tunerFor(device: number, layout: WriteLayout): Tuner;
}

/** This machine's GPUs, timed through the loaded library. */
export function createGpuDeps(): GpuSide {
  // One layout's scratch buffers (sized from free memory, up to 1.5 GiB) at a time: the next
  // layout's tuner frees the previous one's.
  let current: DeviceTuner | undefined;
  process.once("exit", () => current?.free());
  return {
    gpus(): GpuInfo[] | NoGpus {
      let count: number;
      try {
        count = deviceCount();
      } catch (error) {
        return { error: firstLine(error), noGpu: error instanceof MlaKvError && error.code === "NO_DEVICE" };
      }
      if (count === 0) return { error: "the NVIDIA driver reports no GPU", noGpu: true };
      return Array.from({ length: count }, (_, index) => ({
        index,
        name: deviceInfo(index).name,
        identity: gpuIdentity(index),
      }));
    },
    tunerFor(device, layout) {
      current?.free();
      current = undefined;
      current = deviceTuner(device, layout);
      return current;
    },
  };
}

/**
 * The GPU side of `bun run autotune`: which GPUs there are (with the identity their profiles are
 * keyed by) and a timing function per (device, layout). The command takes it as a dependency, so
 * its parsing, search and output run and are tested without a GPU.
 */
import { MlaKvError } from "../ffi/errors.ts";
import { deviceCount, deviceInfo, supportsPath } from "../src/device.ts";
import { gpuIdentity } from "../autotune/identity.ts";
import { createMeasurer, type Measurer } from "../autotune/measure.ts";
import type { GpuIdentity } from "../autotune/profile.ts";
import type { MeasureFn } from "../autotune/search.ts";
import { layoutInputOf, type TuneLayoutSpec } from "./autotune_flags.ts";
import { firstLine } from "./usage.ts";

export interface GpuInfo {
  /** The CUDA device index. */
  index: number;
  name: string;
  identity: GpuIdentity;
  /** Whether the TMA path can run on this GPU (sm_90 and later). */
  tmaAllowed: boolean;
}

/** Why no GPU can be used: `noGpu` when the library works but finds none (no driver, no device). */
export interface NoGpus {
  error: string;
  noGpu?: boolean;
}

/** What the command needs from the GPUs. */
export interface GpuSide {
  /** The GPUs there are, or why none can be used. */
  gpus(): GpuInfo[] | NoGpus;
  /** A timing function for one layout on one device: µs per call, already a best-of-several. */
  measureFor(device: number, layout: TuneLayoutSpec): MeasureFn;
}

/** This machine's GPUs, timed through the loaded library. */
export function createGpuDeps(): GpuSide {
  // One layout's scratch buffers (about 1.3 GB for 1152-byte rows) at a time: the next layout's
  // measurer frees the previous one's.
  let current: Measurer | undefined;
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
        tmaAllowed: supportsPath(index, "tma"),
      }));
    },
    measureFor(device, layout) {
      current?.free();
      current = createMeasurer(device, layoutInputOf(layout));
      return current.measure;
    },
  };
}

/** A GPU side that has no GPU, for runs that need none (help, bad flags). */
export function noGpu(reason: string): GpuSide {
  return {
    gpus: () => ({ error: reason }),
    measureFor: () => {
      throw new Error(reason);
    },
  };
}

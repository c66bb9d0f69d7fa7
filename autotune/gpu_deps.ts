/**
 * The GPU side of `bun run autotune`: which GPUs there are (with the identity their profiles are
 * keyed by) and a timing function per (device, layout). Kept apart from cli.ts so the command's
 * parsing, search and output are tested without a GPU.
 */
import { deviceCount, deviceInfo, gpuProblem, supportsPath } from "../src/device.ts";
import { layoutInputOf, type AutotuneDeps, type GpuInfo } from "./cli.ts";
import { gpuIdentity } from "./identity.ts";
import { createMeasurer, type Measurer } from "./measure.ts";

export function createGpuDeps(): Pick<AutotuneDeps, "gpus" | "measureFor"> {
  // One layout's scratch buffers (about 1.3 GB for 1152-byte rows) at a time: the next layout's
  // measurer frees the previous one's.
  let current: Measurer | undefined;
  process.once("exit", () => current?.free());
  return {
    gpus(): GpuInfo[] | { error: string } {
      const problem = gpuProblem(0);
      if (problem !== null) return { error: problem.message };
      const count = deviceCount();
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

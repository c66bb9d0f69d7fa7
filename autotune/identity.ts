/**
 * The identity a profile is keyed and stamped with: the GPU as the driver reports it, the code of
 * the library (the sources hash of its build id: a comment edit or another set of architectures
 * changes nothing a GPU runs), and this package's version. Two GPUs with the same identity share
 * one profile.
 */
import { buildIdSourceHash } from "../ffi/build_id.ts";
import { deviceInfo } from "../src/device.ts";
import { libraryInfo } from "../ffi/native.ts";
import { PACKAGE_VERSION } from "../ffi/package_root.ts";
import type { GpuIdentity } from "./profile.ts";

export function gpuIdentity(device: number): GpuIdentity {
  const info = deviceInfo(device);
  return {
    gpu: {
      name: info.name,
      ccMajor: info.computeCapability[0],
      ccMinor: info.computeCapability[1],
      smCount: info.smCount,
      l2Bytes: info.l2Bytes,
      driverVersion: info.driverVersion,
      runtimeVersion: info.runtimeVersion,
    },
    packageVersion: PACKAGE_VERSION,
    libraryBuildId: buildIdSourceHash(libraryInfo().buildId),
  };
}

/**
 * Why no GPU can be used here, said as the real cause: the CUDA runtime answers "insufficient
 * driver" both when no driver is installed and when it is too old, and a missing Deno permission
 * surfaces as a failed file check. Every "no GPU" error of the package (the binding's statuses,
 * `deviceCount() === 0`) and every Deno permission failure is worded here, and the example, the
 * benchmark and the commands map them to exit codes here too.
 *
 * @module
 */

import { MlaKvError } from "./errors.ts";
import type { MlaKvSymbols } from "./symbols.ts";

/** Exit status of the example, the benchmark and the commands when this machine has no usable GPU. */
export const EXIT_NO_GPU = 3;
/** Exit status for any other failure. */
export const EXIT_FAILURE = 1;

/** The exit status for `error`: {@link EXIT_NO_GPU} for NO_DEVICE, else {@link EXIT_FAILURE}. */
export function exitCodeFor(error: unknown): number {
  return error instanceof MlaKvError && error.code === "NO_DEVICE" ? EXIT_NO_GPU : EXIT_FAILURE;
}

/**
 * What a program (the example, the benchmark, a command) prints when it cannot start because of
 * `error`, and the status it exits with: "no usable NVIDIA GPU here" and {@link EXIT_NO_GPU} for
 * NO_DEVICE, the error itself and {@link EXIT_FAILURE} for anything else. The whole message is
 * kept: a missing library's lists every path tried, one a line.
 */
export function startFailure(program: string, error: unknown): { line: string; exitCode: number } {
  const exitCode = exitCodeFor(error);
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof MlaKvError ? `${error.code}: ` : "";
  const line = exitCode === EXIT_NO_GPU ? `${program}: no usable NVIDIA GPU here: ${message}` : `${program}: cannot start: ${code}${message}`;
  return { line, exitCode };
}

/** What the library reports about the CUDA driver and the runtime it links (both need no GPU). */
export interface DriverFacts {
  /** The installed driver's CUDA version, e.g. 13000; 0 when no NVIDIA driver is installed. */
  readonly driverVersion: number;
  /** The CUDA runtime linked into libmla_kv, e.g. 13000. */
  readonly runtimeVersion: number;
}

/** "13.0" for 13000. */
export function cudaVersionText(version: number): string {
  return `${Math.floor(version / 1000)}.${Math.floor((version % 1000) / 10)}`;
}

// The oldest driver branch that runs a CUDA major release's runtimes (minor version
// compatibility, in NVIDIA's CUDA compatibility guide): R525 for 12.x, R580 for 13.x.
const FIRST_DRIVER_BRANCH: Readonly<Record<number, string>> = { 12: "R525", 13: "R580" };

const cudaMajor = (version: number) => Math.floor(version / 1000);

/** "R580 or newer" for a CUDA 13 runtime; a CUDA version when the branch is not known here. */
export function driverNeeded(runtimeVersion: number): string {
  const branch = FIRST_DRIVER_BRANCH[cudaMajor(runtimeVersion)];
  return branch ? `${branch} or newer` : `one for CUDA ${cudaVersionText(runtimeVersion)} or newer`;
}

/**
 * The real cause of a NO_DEVICE failure, from the driver and runtime versions and the C message
 * (`cMessage`); null when the driver is fine and GPUs are visible (the message, e.g. "device 3
 * does not exist", says it all then). `visibleDevices` is the CUDA_VISIBLE_DEVICES value.
 */
export function noDeviceCause(facts: DriverFacts, cMessage: string, visibleDevices: string | undefined, gpusVisible = false): string | null {
  const runtime = `CUDA ${cudaVersionText(facts.runtimeVersion)}`;
  if (facts.driverVersion === 0) {
    return `no NVIDIA driver is installed on this machine (the CUDA runtime found no libcuda.so.1); libmla_kv links the ${runtime} runtime, which needs driver ${driverNeeded(facts.runtimeVersion)}`;
  }
  const driver = `CUDA ${cudaVersionText(facts.driverVersion)}`;
  const tooOld = cudaMajor(facts.driverVersion) < cudaMajor(facts.runtimeVersion) || /cudaErrorInsufficientDriver/.test(cMessage);
  if (tooOld) {
    return (
      `the NVIDIA driver (${driver}) is older than the ${runtime} runtime libmla_kv links: install driver ${driverNeeded(facts.runtimeVersion)}, ` +
      "or build the library from the package's sources with an older CUDA toolkit (`bun run build` in the package's folder, nvcc 12.8+), which the package then loads"
    );
  }
  if (gpusVisible) return null;
  const hint = visibleDevices !== undefined
    ? `CUDA_VISIBLE_DEVICES=${JSON.stringify(visibleDevices)} may hide them: unset it or name a GPU that exists`
    : "check nvidia-smi, and that this container or VM is given the GPU";
  return `the NVIDIA driver (${driver}) is installed but sees no GPU; ${hint}`;
}

/** The driver and runtime versions `symbols` report; null when the library cannot tell. */
export function driverFacts(symbols: MlaKvSymbols): DriverFacts | null {
  const out = new Int32Array(1);
  if (symbols.mla_kv_driver_version(out) !== 0) return null;
  const driverVersion = out[0]!;
  if (symbols.mla_kv_runtime_version(out) !== 0) return null;
  return { driverVersion, runtimeVersion: out[0]! };
}

/**
 * The real cause of a NO_DEVICE failure that the library `symbols` reported with `cMessage`, or
 * null when there is nothing to add (the driver is fine and counts GPUs: a device index was wrong).
 */
export function diagnoseNoDevice(symbols: MlaKvSymbols, cMessage: string): string | null {
  const facts = driverFacts(symbols);
  if (facts === null) return null;
  const count = new Int32Array(1);
  const gpusVisible = symbols.mla_kv_device_count(count) === 0 && count[0]! > 0;
  let visibleDevices: string | undefined;
  try {
    visibleDevices = process.env.CUDA_VISIBLE_DEVICES;
  } catch {
    // Deno without --allow-env: the hint goes without the variable's value
  }
  return noDeviceCause(facts, cMessage, visibleDevices, gpusVisible);
}

/** The `--allow-…` flag a Deno permission error asks for, or null for any other error. */
export function permissionFlag(error: unknown): string | null {
  if (!isPermissionError(error)) return null;
  const named = /--allow-[a-z]+/.exec((error as Error).message);
  return named ? named[0] : "--allow-all";
}

/** True for the errors Deno throws when a permission is missing (NotCapable; PermissionDenied before Deno 2). */
export function isPermissionError(error: unknown): boolean {
  return error instanceof Error && (error.name === "NotCapable" || error.name === "PermissionDenied");
}

/** The flags mla-kv needs under Deno; `--allow-write --allow-sys` only to keep tuned profiles. */
export const DENO_FLAGS = "--allow-ffi --allow-read --allow-env --allow-write --allow-sys";

/** A missing Deno permission as an MlaKvError that names the flag; null for any other error. */
export function permissionError(error: unknown): MlaKvError | null {
  const flag = permissionFlag(error);
  if (flag === null) return null;
  return new MlaKvError(
    "PERMISSION",
    `Deno denied mla-kv a permission it needs: run deno with ${flag} (mla-kv uses ${DENO_FLAGS}). Deno said: ${(error as Error).message}`,
    undefined,
    { cause: error },
  );
}

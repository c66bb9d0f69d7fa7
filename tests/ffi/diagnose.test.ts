import { describe, expect, it } from "bun:test";
import {
  cudaVersionText,
  driverNeeded,
  EXIT_FAILURE,
  EXIT_NO_GPU,
  exitCodeFor,
  noDeviceCause,
  permissionError,
  permissionFlag,
  startFailure,
} from "../../ffi/diagnose.ts";
import { MlaKvError } from "../../ffi/errors.ts";

const INSUFFICIENT = "cudaGetDeviceCount failed: CUDA driver version is insufficient for CUDA runtime version (cudaErrorInsufficientDriver)";
const denoDenied = (what: string, flag: string) =>
  Object.assign(new Error(`Requires ${what} access to "x", run again with the ${flag} flag`), { name: "NotCapable" });

describe("noDeviceCause", () => {
  it("says no driver is installed when the driver version is 0, though CUDA calls it an insufficient driver", () => {
    const cause = noDeviceCause({ driverVersion: 0, runtimeVersion: 13000 }, INSUFFICIENT, undefined);
    expect(cause).toStartWith("no NVIDIA driver is installed on this machine");
    expect(cause).toContain("CUDA 13.0 runtime, which needs driver R580 or newer");
    expect(cause).not.toContain("older");
  });

  it("names both versions and the driver needed when the driver is older than the runtime", () => {
    const cause = noDeviceCause({ driverVersion: 12040, runtimeVersion: 13000 }, INSUFFICIENT, undefined)!;
    expect(cause).toStartWith("the NVIDIA driver (CUDA 12.4) is older than the CUDA 13.0 runtime libmla_kv links: install driver R580 or newer");
    expect(cause).toContain("bun run build");
  });

  it("trusts CUDA's insufficient-driver verdict within one major version too", () => {
    expect(noDeviceCause({ driverVersion: 13000, runtimeVersion: 13010 }, INSUFFICIENT, undefined)).toContain("is older than the CUDA 13.1 runtime");
  });

  it("says the driver sees no GPU, with the nvidia-smi hint, when it is recent enough", () => {
    const cause = noDeviceCause({ driverVersion: 13000, runtimeVersion: 13000 }, "no CUDA device is visible (the driver found no GPU)", undefined);
    expect(cause).toBe("the NVIDIA driver (CUDA 13.0) is installed but sees no GPU; check nvidia-smi, and that this container or VM is given the GPU");
  });

  it("names CUDA_VISIBLE_DEVICES and its value when it is set", () => {
    const cause = noDeviceCause({ driverVersion: 13000, runtimeVersion: 13000 }, "", "-1");
    expect(cause).toBe('the NVIDIA driver (CUDA 13.0) is installed but sees no GPU; CUDA_VISIBLE_DEVICES="-1" may hide them: unset it or name a GPU that exists');
  });

  it("adds nothing when the driver is fine and sees GPUs (a device index was wrong)", () => {
    expect(noDeviceCause({ driverVersion: 13000, runtimeVersion: 13000 }, "device 3 does not exist (1 visible)", undefined, true)).toBeNull();
  });
});

describe("versions", () => {
  it("writes CUDA versions as the driver does", () => {
    expect(cudaVersionText(13000)).toBe("13.0");
    expect(cudaVersionText(12080)).toBe("12.8");
    expect(cudaVersionText(12090)).toBe("12.9");
  });

  it("names the oldest driver branch of the runtime's major release", () => {
    expect(driverNeeded(13000)).toBe("R580 or newer");
    expect(driverNeeded(12080)).toBe("R525 or newer");
    expect(driverNeeded(14000)).toBe("one for CUDA 14.0 or newer");
  });
});

describe("Deno permissions", () => {
  it("reads the missing flag from Deno's NotCapable and PermissionDenied errors", () => {
    expect(permissionFlag(denoDenied("ffi", "--allow-ffi"))).toBe("--allow-ffi");
    expect(permissionFlag(Object.assign(new Error('Requires env access to "HOME", run again with the --allow-env flag'), { name: "PermissionDenied" }))).toBe("--allow-env");
  });

  it("takes no other error for a permission error", () => {
    expect(permissionFlag(new Error("run again with the --allow-ffi flag"))).toBeNull();
    expect(permissionFlag("NotCapable")).toBeNull();
    expect(permissionError(new Error("boom"))).toBeNull();
  });

  it("turns it into a PERMISSION error that names the flag, lists the flags mla-kv uses, and never says to build", () => {
    const error = permissionError(denoDenied("read", "--allow-read"))!;
    expect(error.code).toBe("PERMISSION");
    expect(error.message).toStartWith("Deno denied mla-kv a permission it needs: run deno with --allow-read (mla-kv uses --allow-ffi --allow-read --allow-env --allow-write --allow-sys).");
    expect(error.message).toContain('Deno said: Requires read access to "x"');
    expect(error.message).not.toContain("bun run build");
  });
});

describe("exit statuses", () => {
  it("are 3 for no usable GPU and 1 for any other failure", () => {
    expect([EXIT_NO_GPU, EXIT_FAILURE]).toEqual([3, 1]);
    expect(exitCodeFor(new MlaKvError("NO_DEVICE", "x"))).toBe(3);
    expect(exitCodeFor(new MlaKvError("LIBRARY_NOT_FOUND", "x"))).toBe(1);
    expect(exitCodeFor(new MlaKvError("PERMISSION", "x"))).toBe(1);
    expect(exitCodeFor(new Error("x"))).toBe(1);
  });

  it("come with the line a program prints, the whole message kept", () => {
    expect(startFailure("example", new MlaKvError("NO_DEVICE", "no driver"))).toEqual({ line: "example: no usable NVIDIA GPU here: no driver", exitCode: 3 });
    const missing = new MlaKvError("LIBRARY_NOT_FOUND", "libmla_kv could not be loaded (bun). Tried:\n  - /a: no such file\n  - /b: no such file");
    expect(startFailure("bench", missing)).toEqual({ line: `bench: cannot start: LIBRARY_NOT_FOUND: ${missing.message}`, exitCode: 1 });
  });
});

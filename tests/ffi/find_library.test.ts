import { afterAll, describe, expect, it } from "bun:test";
import { MLA_KV_ABI_VERSION } from "../../ffi/abi.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bunAdapter } from "../../ffi/bun_adapter.ts";
import { libraryCandidates, libraryFileName, openLibrary, PACKAGE_ROOT } from "../../ffi/find_library.ts";
import type { LibraryAdapter, OpenedLibrary } from "../../ffi/library_adapter.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { thrown } from "../helpers/thrown.ts";

const scratch = mkdtempSync(join(tmpdir(), "mla-kv-find-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A package root with the given library files present (empty files: the fake adapter never reads them). */
function packageWith(files: string[]): string {
  const root = mkdtempSync(join(scratch, "pkg-"));
  for (const file of files) {
    mkdirSync(join(root, file, ".."), { recursive: true });
    writeFileSync(join(root, file), "");
  }
  return root;
}

/** An adapter that records what it was asked to open and fails for the paths in `broken`. */
function recordingAdapter(broken: string[] = []): LibraryAdapter & { opened: string[] } {
  const opened: string[] = [];
  return {
    runtime: "test",
    opened,
    open(path: string): OpenedLibrary {
      opened.push(path);
      if (broken.some((b) => path.endsWith(b))) throw new Error("invalid ELF header");
      return { path, symbols: {} as OpenedLibrary["symbols"], close() {} };
    },
  };
}

describe("libraryCandidates", () => {
  it("looks in the prebuilt slot for this platform before the local build", () => {
    expect(libraryCandidates({}, "/pkg", "linux", "x64")).toEqual([
      { path: "/pkg/prebuilt/linux-x64/libmla_kv.so", source: "prebuilt" },
      { path: "/pkg/build/libmla_kv.so", source: "build" },
    ]);
  });

  it("uses only MLA_KV_LIBRARY when it is set, never falling back", () => {
    expect(libraryCandidates({ MLA_KV_LIBRARY: "/opt/lib.so" }, "/pkg")).toEqual([{ path: "/opt/lib.so", source: "MLA_KV_LIBRARY" }]);
  });

  it("treats an empty MLA_KV_LIBRARY as unset", () => {
    expect(libraryCandidates({ MLA_KV_LIBRARY: "" }, "/pkg", "linux", "arm64")[0]!.path).toBe("/pkg/prebuilt/linux-arm64/libmla_kv.so");
  });

  it("resolves the package root to the folder that holds mod.ts", () => {
    expect(Bun.file(join(PACKAGE_ROOT, "mod.ts")).size).toBeGreaterThan(0);
    expect(libraryCandidates({}).at(-1)!.path).toBe(join(PACKAGE_ROOT, "build", libraryFileName()));
  });

  it("names the library file per platform", () => {
    expect(libraryFileName("linux")).toBe("libmla_kv.so");
    expect(libraryFileName("darwin")).toBe("libmla_kv.dylib");
    expect(libraryFileName("win32")).toBe("mla_kv.dll");
  });
});

describe("openLibrary", () => {
  describe("when both the prebuilt and the built library exist", () => {
    it("loads the prebuilt one", () => {
      const root = packageWith(["prebuilt/linux-x64/libmla_kv.so", "build/libmla_kv.so"]);
      const adapter = recordingAdapter();
      expect(openLibrary(adapter, { env: {}, packageRoot: root, platform: "linux", arch: "x64" }).path).toBe(`${root}/prebuilt/linux-x64/libmla_kv.so`);
      expect(adapter.opened).toEqual([`${root}/prebuilt/linux-x64/libmla_kv.so`]);
    });

    it("falls back to the build when the prebuilt one does not load", () => {
      const root = packageWith(["prebuilt/linux-x64/libmla_kv.so", "build/libmla_kv.so"]);
      const adapter = recordingAdapter(["prebuilt/linux-x64/libmla_kv.so"]);
      expect(openLibrary(adapter, { env: {}, packageRoot: root, platform: "linux", arch: "x64" }).path).toBe(`${root}/build/libmla_kv.so`);
      expect(adapter.opened.length).toBe(2);
    });
  });

  describe("when no library exists", () => {
    const root = packageWith([]);
    const error = thrown(() => openLibrary(recordingAdapter(), { env: {}, packageRoot: root, platform: "linux", arch: "x64" }));

    it("throws LIBRARY_NOT_FOUND", () => {
      expect(error.code).toBe("LIBRARY_NOT_FOUND");
    });

    it("lists every path it tried, in order, with why each was rejected", () => {
      expect(error.message).toContain(
        `Tried:\n  - ${root}/prebuilt/linux-x64/libmla_kv.so (prebuilt for this platform): no such file\n  - ${root}/build/libmla_kv.so (local build): no such file\n`,
      );
    });

    it("says how to fix it", () => {
      expect(error.message).toContain(`Fix: run \`bun run build\` in ${root} (needs nvcc), or set MLA_KV_LIBRARY=/path/to/libmla_kv.so.`);
    });
  });

  describe("when MLA_KV_LIBRARY points at a missing file", () => {
    it("fails without looking anywhere else, naming the variable", () => {
      const root = packageWith(["build/libmla_kv.so"]);
      const adapter = recordingAdapter();
      const error = thrown(() => openLibrary(adapter, { env: { MLA_KV_LIBRARY: `${scratch}/nope.so` }, packageRoot: root }));
      expect(error.code).toBe("LIBRARY_NOT_FOUND");
      expect(error.message).toContain(`${scratch}/nope.so (from MLA_KV_LIBRARY): no such file`);
      expect(error.message).toContain("point MLA_KV_LIBRARY at a libmla_kv built for this machine, or unset it");
      expect(adapter.opened).toEqual([]);
    });
  });

  describe("with the Bun adapter", () => {
    it("reports a file that is not a library with the loader's reason", () => {
      const notALibrary = join(scratch, "libmla_kv.so");
      writeFileSync(notALibrary, "this is text, not ELF\n");
      const error = thrown(() => openLibrary(bunAdapter, { env: { MLA_KV_LIBRARY: notALibrary } }));
      expect(error.code).toBe("LIBRARY_NOT_FOUND");
      expect(error.message).toContain(`${notALibrary} (from MLA_KV_LIBRARY): exists but could not be loaded: `);
      expect(error.message).toMatch(/ELF|invalid|too short|file/i);
    });

    const host = hostLibrary();
    it.skipIf(!host)(`binds every symbol of a real library${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
      const library = openLibrary(bunAdapter, { env: { MLA_KV_LIBRARY: host! } });
      try {
        expect(library.path).toBe(host!);
        expect(library.symbols.mla_kv_abi_version()).toBe(MLA_KV_ABI_VERSION);
        expect(library.symbols.mla_kv_build_id()).toBe("host-fixture");
        expect(typeof library.symbols.mla_kv_last_error()).toBe("string");
      } finally {
        library.close();
      }
    });
  });
});

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

const HASH = "0123456789ab";
const OTHER = "fedcba987654";

/** A file that is not a real library but holds the build id `id` the way a built one does. */
const holding = (id: string) => `\x7fELF${"\x01".repeat(300)}\0${id}\0${"\x02".repeat(300)}`;

/** A package root with the given library files present, each holding its build id (the fake adapter never runs them). */
function packageWith(files: Record<string, string>): string {
  const root = mkdtempSync(join(scratch, "pkg-"));
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(join(root, file, ".."), { recursive: true });
    writeFileSync(join(root, file), content, "latin1");
  }
  return root;
}

const BUILD = "build/libmla_kv.so";
const PREBUILT = "prebuilt/linux-x64/libmla_kv.so";

/** An adapter that records what it was asked to open and fails for the paths in `broken`. */
function recordingAdapter(broken: string[] = [], failure: () => Error = () => new Error("invalid ELF header")): LibraryAdapter & { opened: string[] } {
  const opened: string[] = [];
  return {
    runtime: "test",
    opened,
    open(path: string): OpenedLibrary {
      opened.push(path);
      if (broken.some((b) => path.endsWith(b))) throw failure();
      return { path, symbols: {} as OpenedLibrary["symbols"], close() {} };
    },
  };
}

const open = (adapter: LibraryAdapter, root: string, sourceHash: string | null = HASH) =>
  openLibrary(adapter, { env: {}, packageRoot: root, platform: "linux", arch: "x64", sourceHash });

describe("libraryCandidates", () => {
  it("lists the local build before the prebuilt slot for this platform", () => {
    expect(libraryCandidates({}, "/pkg", "linux", "x64")).toEqual([
      { path: "/pkg/build/libmla_kv.so", source: "build" },
      { path: "/pkg/prebuilt/linux-x64/libmla_kv.so", source: "prebuilt" },
    ]);
  });

  it("uses only MLA_KV_LIBRARY when it is set, never falling back", () => {
    expect(libraryCandidates({ MLA_KV_LIBRARY: "/opt/lib.so" }, "/pkg")).toEqual([{ path: "/opt/lib.so", source: "MLA_KV_LIBRARY" }]);
  });

  it("treats an empty MLA_KV_LIBRARY as unset", () => {
    expect(libraryCandidates({ MLA_KV_LIBRARY: "" }, "/pkg", "linux", "arm64")[1]!.path).toBe("/pkg/prebuilt/linux-arm64/libmla_kv.so");
  });

  it("resolves the package root to the folder that holds mod.ts", () => {
    expect(Bun.file(join(PACKAGE_ROOT, "mod.ts")).size).toBeGreaterThan(0);
    expect(libraryCandidates({})[0]!.path).toBe(join(PACKAGE_ROOT, "build", libraryFileName()));
  });

  it("names the library file per platform", () => {
    expect(libraryFileName("linux")).toBe("libmla_kv.so");
    expect(libraryFileName("darwin")).toBe("libmla_kv.dylib");
    expect(libraryFileName("win32")).toBe("mla_kv.dll");
  });
});

describe("openLibrary", () => {
  describe("when the local build and the prebuilt library are both of this package's sources", () => {
    const root = packageWith({ [BUILD]: holding(`${HASH}-90a`), [PREBUILT]: holding(`${HASH}-75.80.90a`) });
    const adapter = recordingAdapter();
    const chosen = open(adapter, root);

    it("loads the local build, and only it", () => {
      expect(chosen.library.path).toBe(`${root}/${BUILD}`);
      expect(chosen.source).toBe("build");
      expect(adapter.opened).toEqual([`${root}/${BUILD}`]);
    });

    it("says why: built from these sources, and preferred to the prebuilt one because it was built on purpose", () => {
      expect(chosen.reason).toBe(
        `the local build, built from this package's CUDA sources (${HASH}-90a); preferred to the prebuilt library, of the same sources: a local build is made on purpose`,
      );
    });
  });

  it("loads the prebuilt library when the local build is of other sources, and says the build is stale", () => {
    const root = packageWith({ [BUILD]: holding(`${OTHER}-90a`), [PREBUILT]: holding(`${HASH}-75.80.90a`) });
    const adapter = recordingAdapter();
    const chosen = open(adapter, root);
    expect(chosen.library.path).toBe(`${root}/${PREBUILT}`);
    expect(adapter.opened).toEqual([`${root}/${PREBUILT}`]);
    expect(chosen.reason).toBe(
      `the prebuilt library, built from this package's CUDA sources (${HASH}-75.80.90a); the local build (${root}/${BUILD}) is built from other CUDA sources; \`bun run build\` rebuilds it`,
    );
  });

  it("loads the local build when a prebuilt library left over from another version is there", () => {
    const root = packageWith({ [BUILD]: holding(`${HASH}-90a`), [PREBUILT]: holding(`${OTHER}-75.80.90a`) });
    const chosen = open(recordingAdapter(), root);
    expect(chosen.library.path).toBe(`${root}/${BUILD}`);
    expect(chosen.reason).toContain(`the prebuilt library (${root}/${PREBUILT}) is built from other CUDA sources`);
  });

  it("falls back to the prebuilt library when the local build does not load, and says why", () => {
    const root = packageWith({ [BUILD]: holding(`${HASH}-90a`), [PREBUILT]: holding(`${HASH}-75.80.90a`) });
    const adapter = recordingAdapter([BUILD]);
    const chosen = open(adapter, root);
    expect(chosen.library.path).toBe(`${root}/${PREBUILT}`);
    expect(adapter.opened).toEqual([`${root}/${BUILD}`, `${root}/${PREBUILT}`]);
    expect(chosen.reason).toContain(`the local build (${root}/${BUILD}) could not be loaded: invalid ELF header`);
  });

  it("says there is no local build when only the prebuilt library is there", () => {
    const root = packageWith({ [PREBUILT]: holding(`${HASH}-75.80.90a`) });
    expect(open(recordingAdapter(), root).reason).toBe(`the prebuilt library, built from this package's CUDA sources (${HASH}-75.80.90a); there is no local build`);
  });

  it("prefers the local build, unjudged, when the package has no CUDA sources to compare with", () => {
    const root = packageWith({ [BUILD]: holding(`${OTHER}-90a`), [PREBUILT]: holding(`${OTHER}-90a`) });
    const chosen = open(recordingAdapter(), root, null);
    expect(chosen.library.path).toBe(`${root}/${BUILD}`);
    expect(chosen.reason).toStartWith("the local build; this package has no CUDA sources to compare build ids with");
  });

  describe("when every library there is of other sources", () => {
    const root = packageWith({ [BUILD]: holding(`${OTHER}-90a`), [PREBUILT]: holding(`${OTHER}-75.80.90a`) });
    const adapter = recordingAdapter();
    const error = thrown(() => open(adapter, root));

    it("throws ABI_MISMATCH without loading any", () => {
      expect(error.code).toBe("ABI_MISMATCH");
      expect(adapter.opened).toEqual([]);
    });

    it("names each library as built from other sources and says to rebuild", () => {
      expect(error.message).toContain(`  - ${root}/${BUILD} (local build): built from other CUDA sources (it holds no build id of this package's sources, ${HASH})`);
      expect(error.message).toContain(`  - ${root}/${PREBUILT} (prebuilt for this platform): built from other CUDA sources`);
      expect(error.message).toContain(`Fix: rebuild it with \`bun run build\` in ${root} (needs nvcc), reinstall the package`);
    });
  });

  describe("when no library exists", () => {
    const root = packageWith({});
    const error = thrown(() => open(recordingAdapter(), root));

    it("throws LIBRARY_NOT_FOUND", () => {
      expect(error.code).toBe("LIBRARY_NOT_FOUND");
    });

    it("lists every path it tried, in order, with why each was rejected", () => {
      expect(error.message).toContain(
        `Tried:\n  - ${root}/${BUILD} (local build): no such file\n  - ${root}/${PREBUILT} (prebuilt for this platform): no such file\n`,
      );
    });

    it("says how to fix it", () => {
      expect(error.message).toContain(`Fix: run \`bun run build\` in ${root} (needs nvcc), or set MLA_KV_LIBRARY=/path/to/libmla_kv.so.`);
    });
  });

  it("lets a missing Deno permission through as it is, instead of listing it as a broken library", () => {
    const root = packageWith({ [BUILD]: holding(`${HASH}-90a`), [PREBUILT]: holding(`${HASH}-90a`) });
    const denied = Object.assign(new Error('Requires ffi access to "x", run again with the --allow-ffi flag'), { name: "NotCapable" });
    const adapter = recordingAdapter([BUILD], () => denied);
    expect(() => open(adapter, root)).toThrow(denied);
    expect(adapter.opened).toEqual([`${root}/${BUILD}`]);
  });

  describe("when MLA_KV_LIBRARY is set", () => {
    it("loads that library as it is, whatever its build id, and says so", () => {
      const library = join(packageWith({ "mine.so": holding(`${OTHER}-90a`) }), "mine.so");
      const chosen = openLibrary(recordingAdapter(), { env: { MLA_KV_LIBRARY: library }, sourceHash: HASH });
      expect(chosen.library.path).toBe(library);
      expect(chosen.source).toBe("MLA_KV_LIBRARY");
      expect(chosen.reason).toContain("MLA_KV_LIBRARY is set, so that library is the only one used");
    });

    it("fails without looking anywhere else when it points at a missing file, naming the variable", () => {
      const root = packageWith({ [BUILD]: holding(`${HASH}-90a`) });
      const adapter = recordingAdapter();
      const error = thrown(() => openLibrary(adapter, { env: { MLA_KV_LIBRARY: `${scratch}/nope.so` }, packageRoot: root }));
      expect(error.code).toBe("LIBRARY_NOT_FOUND");
      expect(error.message).toContain(`${scratch}/nope.so (from MLA_KV_LIBRARY): no such file`);
      expect(error.message).toContain("point MLA_KV_LIBRARY at a libmla_kv built for this machine (libmla_kv.so), or unset it");
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
      const { library } = openLibrary(bunAdapter, { env: { MLA_KV_LIBRARY: host! } });
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

import { describe, expect, it } from "bun:test";
import { join } from "node:path";
import { describeViolation, importsOf, layerOf, layerSources, layerViolations } from "../scripts/check_layers.ts";

const ROOT = join(import.meta.dir, "..");

describe("the package's layers", () => {
  const sources = layerSources(ROOT);

  it("import only their own layer and the layers below (cuda ← ffi ← src ← autotune ← mod.ts, cli)", () => {
    expect(layerViolations(sources).map(describeViolation)).toEqual([]);
  });

  it("are read in full: every module of ffi/, src/, autotune/, cli/ and mod.ts", () => {
    for (const file of ["mod.ts", "ffi/abi.ts", "src/vocabulary.ts", "src/dispatch_tables.ts", "autotune/first_use.ts", "cli/inspect.ts"]) expect(sources.has(file)).toBe(true);
    expect([...sources.keys()].every((f) => f.endsWith(".ts"))).toBe(true);
    expect([...sources.keys()].some((f) => f.startsWith("tests/") || f.startsWith("bench/"))).toBe(false);
  });
});

describe("the layer check", () => {
  const check = (files: Record<string, string>) => layerViolations(new Map(Object.entries(files))).map(describeViolation);

  it("names a src/ module that imports autotune/, and an ffi/ module that imports src/", () => {
    expect(
      check({
        "src/dispatch_tables.ts": `import { FIRST_USE_TABLES } from "../autotune/first_use.ts";`,
        "ffi/native.ts": `import { DTYPES } from "../src/dtypes.ts";`,
      }),
    ).toEqual([
      "src/dispatch_tables.ts (src) imports autotune/first_use.ts (autotune)",
      "ffi/native.ts (ffi) imports src/dtypes.ts (src)",
    ]);
  });

  it("names an autotune/ module that imports mod.ts or cli/, and a layer module that imports a user of the package", () => {
    expect(
      check({
        "autotune/tune.ts": `export { setMlaKvBuffer } from "../mod.ts";\nimport "../cli/inspect.ts";`,
        "src/launch.ts": `import { H100_RECORDED } from "../tests/autotune/fixtures/h100_recorded.ts";`,
        "mod.ts": `import { timeWrites } from "./bench/bench_library.ts";`,
      }),
    ).toEqual([
      "autotune/tune.ts (autotune) imports mod.ts (top)",
      "autotune/tune.ts (autotune) imports cli/inspect.ts (top)",
      "src/launch.ts (src) imports tests/autotune/fixtures/h100_recorded.ts (users)",
      "mod.ts (top) imports bench/bench_library.ts (users)",
    ]);
  });

  it("counts type-only imports, dynamic imports and require", () => {
    expect(
      check({
        "src/a.ts": `import type { LayoutProfile } from "../autotune/profile.ts";`,
        "src/b.ts": `const lookup = await import("../autotune/lookup.ts");`,
        "ffi/c.ts": `const { deviceInfo } = require("../src/device.ts");`,
      }),
    ).toEqual([
      "src/a.ts (src) imports autotune/profile.ts (autotune)",
      "src/b.ts (src) imports autotune/lookup.ts (autotune)",
      "ffi/c.ts (ffi) imports src/device.ts (src)",
    ]);
  });

  it("lets modules import down and sideways, packages and built-ins, and ignores imports in comments and strings", () => {
    expect(
      check({
        "mod.ts": `import { autotune } from "./autotune/autotune.ts";\nimport { MlaKvError } from "./ffi/errors.ts";`,
        "cli/inspect.ts": `import { identityKey } from "../autotune/profile.ts";\nimport { parseArgs } from "node:util";`,
        "autotune/profile.ts": `import { z } from "zod";\nimport { parseLayoutKey } from "../src/layout_key.ts";\nimport pkg from "../package.json" with { type: "json" };`,
        "src/dispatch.ts": `// import { tuneOnDevice } from "../autotune/tune.ts";\nconst hint = 'import("../autotune/tune.ts")';\nimport { bucketOf } from "./vocabulary.ts";`,
        "ffi/native.ts": `/** @example import { setMlaKvBuffer } from "../mod.ts"; */\nimport { MLA_KV_OK } from "./abi.ts";`,
      }),
    ).toEqual([]);
  });

  it("leaves the users of the package (tests, bench, scripts, examples) free to import anything", () => {
    expect(
      check({
        "tests/src/a.test.ts": `import "../../mod.ts";`,
        "bench/bench.ts": `import "../autotune/search.ts";`,
        "scripts/x.ts": `import "../cli/inspect.ts";`,
        "examples/write_rows.ts": `import "../mod.ts";`,
      }),
    ).toEqual([]);
  });

  it("places paths in their layers", () => {
    expect(["ffi/abi.ts", "src/layout.ts", "autotune/tune.ts", "mod.ts", "cli/mla_kv.ts", "tests/x.ts", "package.json", "cuda/include/mla_kv.h"].map(layerOf)).toEqual([
      "ffi",
      "src",
      "autotune",
      "top",
      "top",
      "users",
      null,
      null,
    ]);
  });

  it("reads every kind of import a module can make", () => {
    const source = `
      import a from "./a.ts";
      import type { B } from "./b.ts";
      import * as c from "./c.ts";
      import "./d.ts";
      export { e } from "./e.ts";
      export * from "./f.ts";
      const g = await import("./g.ts");
      const h = require("./h.ts");
    `;
    expect(importsOf(source)).toEqual(["./a.ts", "./b.ts", "./c.ts", "./d.ts", "./e.ts", "./f.ts", "./g.ts", "./h.ts"]);
  });
});

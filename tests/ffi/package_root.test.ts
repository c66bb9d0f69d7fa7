import { describe, expect, it } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUNDLED_PROFILES_DIR } from "../../autotune/lookup.ts";
import { findPackage, PACKAGE_NAME, PACKAGE_ROOT, PACKAGE_VERSION } from "../../ffi/package_root.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";

const freshDir = tempDirs("mla-kv-package-root-");

/** `<project>/node_modules/mla-kv` with a dist/ffi folder, inside a project of its own package.json. */
function installedLayout(): { project: string; pkg: string } {
  const project = freshDir();
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", version: "9.9.9" }));
  const pkg = join(project, "node_modules", PACKAGE_NAME);
  mkdirSync(join(pkg, "dist", "ffi"), { recursive: true });
  mkdirSync(join(pkg, "ffi"), { recursive: true });
  writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: PACKAGE_NAME, version: "1.2.3" }));
  return { project, pkg };
}

describe("findPackage", () => {
  it("finds the installed package from its compiled modules (dist/ffi) and from its sources (ffi)", () => {
    const { pkg } = installedLayout();
    expect(findPackage(join(pkg, "dist", "ffi"))).toEqual({ root: pkg, version: "1.2.3" });
    expect(findPackage(join(pkg, "ffi"))).toEqual({ root: pkg, version: "1.2.3" });
  });

  it("passes over a package.json of another name, such as the project's", () => {
    const { project } = installedLayout();
    mkdirSync(join(project, "src"));
    expect(findPackage(join(project, "src"))).toBeNull();
  });
});

describe("PACKAGE_ROOT", () => {
  it("is the folder holding this package's package.json, with its version", () => {
    const manifest = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8"));
    expect(manifest.name).toBe(PACKAGE_NAME);
    expect(PACKAGE_VERSION).toBe(manifest.version);
  });

  it("places the bundled profiles at autotune/profiles under it", () => {
    expect(BUNDLED_PROFILES_DIR).toBe(join(PACKAGE_ROOT, "autotune", "profiles"));
    expect(readFileSync(join(BUNDLED_PROFILES_DIR, "README.md"), "utf8").length).toBeGreaterThan(0);
  });
});

import { afterEach, describe, expect, it } from "bun:test";
import { setWriteDefaults, writeDefaults } from "../../src/write_defaults.ts";
import { thrown } from "../helpers/thrown.ts";

describe("write defaults", () => {
  const initial = writeDefaults();
  afterEach(() => setWriteDefaults(initial));

  it("start with no reserved slot and PDL on", () => {
    expect(writeDefaults()).toEqual({ reservedSlot: null, pdl: true });
  });

  it("change only the keys given and return the previous defaults", () => {
    const previous = setWriteDefaults({ reservedSlot: 0 });
    expect(previous).toEqual({ reservedSlot: null, pdl: true });
    expect(writeDefaults()).toEqual({ reservedSlot: 0, pdl: true });
    setWriteDefaults({ pdl: false });
    expect(writeDefaults()).toEqual({ reservedSlot: 0, pdl: false });
  });

  it("are frozen, so a caller cannot change them behind the setter's back", () => {
    expect(Object.isFrozen(writeDefaults())).toBe(true);
  });

  const bad: Array<[string, unknown, string, string]> = [
    ["refuse a negative reserved slot", { reservedSlot: -1 }, "defaults.reservedSlot", "got -1"],
    ["refuse a reserved slot given as a string", { reservedSlot: "0" }, "defaults.reservedSlot", 'got "0"'],
    ["refuse a pdl default that is not a boolean", { pdl: "yes" }, "defaults.pdl", 'got "yes"'],
    ["refuse an unknown key, naming the known ones", { stream: 1 }, "defaults.stream", "the defaults are reservedSlot and pdl"],
    ["refuse something that is not an object", 0, "defaults", "got 0"],
  ];
  for (const [sentence, update, argument, fragment] of bad) {
    it(`${sentence}, and change nothing`, () => {
      setWriteDefaults({ reservedSlot: 3 });
      const error = thrown(() => setWriteDefaults(update as never));
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.argument).toBe(argument);
      expect(error.message).toContain(fragment);
      expect(writeDefaults()).toEqual({ reservedSlot: 3, pdl: true });
    });
  }
});

/**
 * Every file or folder of the repository that the READMEs and CONTRIBUTING.md
 * name exists. Names are read from code spans, fenced code blocks and
 * Markdown links; a word counts as a repository path when its first segment
 * is an entry of the document's folder or of the repository root (so
 * `server/stack.ts` is checked and an object key such as `reports/q3.json` is
 * not), or when it has a slash and a source or document extension (so a
 * misspelled first segment, `sever/stack.ts`, is caught too). Built, installed
 * and runtime folders (dist/, node_modules/, .test-tools/, storage/, a .venv)
 * are not in the repository and paths through them are skipped, as are placeholders (<id>, /path/to/...),
 * globs, URLs and absolute paths. Markdown links must resolve, no exceptions.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { repoRoot } from "../../kit/repo-root.js";

const root = repoRoot();
const DOCS = ["README.md", "CONTRIBUTING.md", "client/README.md", ...fs.readdirSync(path.join(root, "clients")).map((d) => `clients/${d}/README.md`)].filter(
  (doc) => fs.existsSync(path.join(root, doc)),
);
/** Not in a checkout: made by the build, npm, the test installer or the daemon. */
const NOT_IN_REPO = new Set(["dist", "node_modules", ".test-tools", "storage", ".venv"]);
/** Paths that are illustrative on purpose, each with where it lives instead. */
const ILLUSTRATIVE: Record<string, string> = {
  "out/scenario.js": "the compiled scenario inside the package test's temporary project",
};
// Not .json or .txt: object keys in examples look like those (`reports/q3.json`).
const CODE_EXTENSION = /\.(ts|js|cjs|mjs|sh|py|go|proto|md|yaml|yml|toml|service|env)$/;

/** The text of code spans and fenced blocks, and the targets of Markdown links. */
function mentions(markdown: string): { code: string[]; links: string[] } {
  const code: string[] = [];
  const rest = markdown.replace(/^```[^\n]*\n([\s\S]*?)^```/gm, (_all, block: string) => {
    code.push(block);
    return "";
  });
  for (const m of rest.matchAll(/(`+)([^`]+?)\1/g)) code.push(m[2]!);
  const links = [...rest.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((t) => !/^(https?:|mailto:|#)/.test(t));
  return { code, links: links.map((t) => t.replace(/#.*$/, "")) };
}

/** The words of code that look like repository paths, normalised (no leading ./, no trailing punctuation). */
function pathWords(code: string, docDir: string): string[] {
  const words = code.split(/[\s=,;|()'"`<>\[\]]+/).map((w) => w.replace(/^\.\//, "").replace(/[.:]+$/, ""));
  return words.filter((w) => {
    if (w === "" || w === "." || w === ".." || /[*{}$~?!@#%^&+]|:\/\/|^\/|^-/.test(w)) return false;
    if (w.split("/").some((segment) => NOT_IN_REPO.has(segment))) return false;
    const first = w.split("/")[0]!;
    const rooted = [docDir, root].some((dir) => fs.existsSync(path.join(dir, first)));
    return rooted || (w.includes("/") && CODE_EXTENSION.test(w));
  });
}

const seen: string[] = [];
const exists = (p: string, docDir: string) => [docDir, root].some((dir) => fs.existsSync(path.join(dir, p)));

test.each(DOCS)("every repository path %s names exists", (doc) => {
  const docDir = path.dirname(path.join(root, doc));
  const { code, links } = mentions(fs.readFileSync(path.join(root, doc), "utf8"));
  const paths = code.flatMap((c) => pathWords(c, docDir));
  seen.push(...paths);
  const missing = [
    ...links.filter((target) => !fs.existsSync(path.resolve(docDir, target))).map((t) => `link ${t}`),
    ...paths.filter((p) => !(p in ILLUSTRATIVE) && !exists(p, docDir)).map((p) => `\`${p}\``),
  ];
  expect([...new Set(missing)]).toEqual([]);
  // The README names the repository's files all over: a checker that finds few has stopped reading.
  if (doc === "README.md") expect(new Set(paths).size).toBeGreaterThan(40);
});

afterAll(() => {
  // An exception nothing needs any more goes.
  for (const p of Object.keys(ILLUSTRATIVE)) expect([p, seen.includes(p)]).toEqual([p, true]);
});

test("the checker finds paths, and only paths", () => {
  const docDir = root;
  expect(pathWords("bash test/setup/install-tools.sh and node dist/bench/fuzz.js", docDir)).toEqual(["test/setup/install-tools.sh"]);
  expect(pathWords("reports/q3.json ./q3.json blobs/<xx>/<id> /path/to/model.bin a/b", docDir)).toEqual([]);
  expect(pathWords("sever/stack.ts server/stack.ts.", docDir)).toEqual(["sever/stack.ts", "server/stack.ts"]);
  expect(mentions("see `server/` and [the design](docs/x.md#y) or [site](https://e.org)\n```sh\nnpm run bench\n```\n")).toEqual({
    code: ["npm run bench\n", "server/"],
    links: ["docs/x.md"],
  });
});

/**
 * The shape of `src/`: no import circle (type-only imports count too: a
 * circle of types is still two files that must be read together), and no
 * file over ~500 lines (STYLE.md: rooms stay small).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const srcDir = join(root, 'src');
const MAX_LINES = 500;
/** Circles let through (none: keep it that way). */
const ALLOWED_CIRCLES: [string, string][] = [];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Every relative module a file imports or re-exports from (static `import` / `export ... from`, and `import()`). */
export function relativeImports(file: string, text: string): string[] {
  const found = new Set<string>();
  const patterns = [/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*['"](\.[^'"]+)['"]/g, /(?:^|\n)\s*import\s*['"](\.[^'"]+)['"]/g, /\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g];
  for (const pattern of patterns) {
    for (const match of text.matchAll(pattern)) {
      found.add(resolve(dirname(file), match[1].replace(/\.js$/, '.ts')));
    }
  }
  return [...found];
}

/** The first import circle found in `graph` (as a list of files, first repeated at the end), or null. */
export function findCircle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): string[] | null => {
    const seen = state.get(file);
    if (seen === 'done') return null;
    if (seen === 'visiting') return [...stack.slice(stack.indexOf(file)), file];
    state.set(file, 'visiting');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      const circle = visit(next);
      if (circle !== null) return circle;
    }
    stack.pop();
    state.set(file, 'done');
    return null;
  };
  for (const file of graph.keys()) {
    const circle = visit(file);
    if (circle !== null) return circle;
  }
  return null;
}

describe('the layout of src/', () => {
  const files = sourceFiles(srcDir);
  const texts = new Map(files.map((file) => [file, readFileSync(file, 'utf8')]));

  test('the import walk finds the files it should (server.ts imports its parts)', () => {
    assert.ok(files.length > 20, `found only ${files.length} files under ${srcDir}`);
    const server = relativeImports(join(srcDir, 'server.ts'), texts.get(join(srcDir, 'server.ts'))!);
    assert.ok(server.includes(join(srcDir, 'send.ts')), 'server.ts imports send.ts');
    assert.ok(server.includes(join(srcDir, 'server-core.ts')), 'server.ts imports server-core.ts');
  });

  test('the circle finder reports a circle of type-only imports', () => {
    const a = '/x/a.ts';
    const b = '/x/b.ts';
    const graph = new Map([
      [a, relativeImports(a, "import type { B } from './b.js';")],
      [b, relativeImports(b, "export type { A } from './a.js';")],
    ]);
    assert.deepEqual(findCircle(graph), [a, b, a]);
    assert.equal(findCircle(new Map([[a, [b]], [b, []]])), null);
  });

  test('no file in src/ imports, through any chain, a file that imports it back', () => {
    const graph = new Map(files.map((file) => [file, relativeImports(file, texts.get(file)!)]));
    for (const [from, to] of ALLOWED_CIRCLES) {
      const edges = graph.get(join(srcDir, to)) ?? [];
      const at = edges.indexOf(join(srcDir, from));
      if (at !== -1) edges.splice(at, 1);
    }
    const circle = findCircle(graph);
    assert.equal(circle, null, `import circle: ${circle?.map((f) => relative(srcDir, f)).join(' -> ')}`);
  });

  test(`no file in src/ is over ${MAX_LINES} lines`, () => {
    const long = files
      .map((file) => ({ file: relative(srcDir, file), lines: texts.get(file)!.split('\n').length }))
      .filter(({ lines }) => lines > MAX_LINES);
    assert.deepEqual(long, []);
  });
});

/**
 * The published types: `test/types/consumer.ts` is checked with `tsc
 * --noEmit` against the built `.d.ts` files as a consumer imports them
 * (`import ... from 'wavecast'`, through the package's `exports`), without
 * `skipLibCheck`; and every type a public signature names is exported.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

/** Runs tsc --noEmit over `file` (inside the package, so `wavecast` resolves to the package itself). */
function check(file: string): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'wavecast-types-'));
  try {
    const config = join(dir, 'tsconfig.json');
    writeFileSync(
      config,
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ['node'],
          typeRoots: [join(root, 'node_modules/@types')],
        },
        files: [file],
      }),
    );
    const result = spawnSync(process.execPath, [tsc, '-p', config], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    return { status: result.status, output: `${result.stdout}${result.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('published types', () => {
  test('a consumer file type-checks against the built .d.ts: frames narrow, public types are exported, internals and mistakes are errors', () => {
    const { status, output } = check(join(root, 'test/types/consumer.ts'));
    assert.equal(output, '');
    assert.equal(status, 0);
  });

  test('the check fails on an expected error that does not happen (the harness can fail)', () => {
    const dir = mkdtempSync(join(root, 'test/types/tmp-'));
    try {
      const file = join(dir, 'wrong.ts');
      writeFileSync(file, "import { Server } from 'wavecast';\n// @ts-expect-error\nnew Server({ port: 1 });\n");
      const { status, output } = check(file);
      assert.notEqual(status, 0);
      assert.match(output, /Unused '@ts-expect-error' directive/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('every type named in the signature of an export is itself exported', () => {
    const index = join(root, 'dist/src/index.d.ts');
    const program = ts.createProgram([index], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, types: ['node'], typeRoots: [join(root, 'node_modules/@types')] });
    const checker = program.getTypeChecker();
    const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(index)!)!);
    const exported = new Set(exports.map((s) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s)));
    const ours = (node: ts.Node): boolean => node.getSourceFile().fileName.startsWith(join(root, 'dist/src'));
    const missing = new Set<string>();
    const seen = new Set<ts.Node>();
    const visit = (node: ts.Node): void => {
      if (seen.has(node)) return;
      seen.add(node);
      // Private members and bodies are not part of a signature.
      if ((ts.isPropertyDeclaration(node) || ts.isMethodDeclaration(node)) && ts.getCombinedModifierFlags(node) & ts.ModifierFlags.Private) return;
      if (ts.isTypeReferenceNode(node) || ts.isExpressionWithTypeArguments(node)) {
        const name = ts.isTypeReferenceNode(node) ? node.typeName : node.expression;
        let symbol = checker.getSymbolAtLocation(name);
        if (symbol !== undefined && symbol.flags & ts.SymbolFlags.Alias) symbol = checker.getAliasedSymbol(symbol);
        const declaration = symbol?.declarations?.[0];
        if (symbol !== undefined && declaration !== undefined && ours(declaration) && !ts.isTypeParameterDeclaration(declaration)) {
          if (!exported.has(symbol)) missing.add(`${symbol.name} (${declaration.getSourceFile().fileName.slice(root.length)})`);
          visit(declaration);
        }
      }
      ts.forEachChild(node, visit);
    };
    for (const symbol of exported) for (const declaration of symbol.declarations ?? []) if (ours(declaration)) visit(declaration);
    assert.ok(exported.size > 20, `found ${exported.size} exports`);
    assert.deepEqual([...missing], []);
  });
});

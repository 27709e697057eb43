// Rules of the code base checked on the source text: one catalogue of error codes that the README
// documents, every error class a RingcastError, and protocol cores free of I/O, clocks, randomness and
// timers. Pure file reads; no process started.
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ERR } from '@ringcast/ring-paxos';
import { KV_ERR } from '@ringcast/psmr-proxy';

const ROOT = join(import.meta.dirname, '..');
const PACKAGES = join(ROOT, 'packages');

/** Every .ts file under `dir`, as paths relative to the repository root, sorted. */
function tsFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => relative(ROOT, join(dir, f)))
    .sort();
}

/** The source files of every package (packages/<name>/src/**), including packages added later. */
const SOURCES = readdirSync(PACKAGES).flatMap((p) => {
  try {
    return tsFiles(join(PACKAGES, p, 'src'));
  } catch {
    return []; // a package without src/
  }
});
const read = (f: string): string => readFileSync(join(ROOT, f), 'utf8');

const OWN_CODE = /\bERR_(?:RINGCAST|PSMR|KV)_[A-Z0-9_]*[A-Z0-9]/g;
const CATALOGUE_FILES = ['packages/ring-paxos/src/errors.ts', 'packages/psmr-proxy/src/services/kv.ts'];

describe('error codes', () => {
  const catalogue = [...Object.values(ERR), ...Object.values(KV_ERR)];

  it('each code is defined once, under its family prefix', () => {
    expect(new Set(catalogue).size).toBe(catalogue.length);
    for (const c of Object.values(ERR)) expect(c).toMatch(/^ERR_(RINGCAST|PSMR)_[A-Z0-9_]+$/);
    for (const c of Object.values(KV_ERR)) expect(c).toMatch(/^ERR_KV_[A-Z0-9_]+$/);
  });

  it("the root README's \"Error codes\" section lists exactly the catalogue, and no README names a code outside it", () => {
    const readme = read('README.md');
    const start = readme.indexOf('\n## Error codes\n');
    expect(start, 'README.md has no "## Error codes" section').toBeGreaterThan(0);
    const end = readme.indexOf('\n## ', start + 1);
    const listed = new Set(readme.slice(start, end === -1 ? undefined : end).match(OWN_CODE));
    expect([...catalogue].filter((c) => !listed.has(c)), 'in the catalogue, not in the README list').toEqual([]);
    expect([...listed].filter((c) => !catalogue.includes(c)), 'in the README list, not in the catalogue').toEqual([]);
    const docs = ['README.md', ...readdirSync(PACKAGES).map((p) => `packages/${p}/README.md`)].filter((f) => {
      try {
        return read(f).length > 0;
      } catch {
        return false;
      }
    });
    const unknown = docs.flatMap((f) => (read(f).match(OWN_CODE) ?? []).filter((c) => !catalogue.includes(c)).map((c) => `${f}: ${c}`));
    expect(unknown).toEqual([]);
  });

  it('no source file spells a code as a string outside the catalogue', () => {
    const literal = /['"`]ERR_(?:RINGCAST|PSMR|KV)_/;
    const spelled = SOURCES.filter((f) => !CATALOGUE_FILES.includes(f)).flatMap((f) =>
      read(f)
        .split('\n')
        .flatMap((line, i) => (literal.test(line) ? [`${f}:${i + 1}: ${line.trim()}`] : [])),
    );
    expect(spelled).toEqual([]);
  });

  it('every error class extends RingcastError', () => {
    const base = new Map<string, string>();
    for (const f of SOURCES) for (const m of read(f).matchAll(/\bclass\s+(\w+)(?:<[^>]*>)?\s+extends\s+(\w+)/g)) base.set(m[1]!, m[2]!);
    const errorClasses = [...base.keys()].filter((c) => c.endsWith('Error'));
    expect(errorClasses.length).toBeGreaterThanOrEqual(10);
    const reaches = (c: string): boolean => {
      for (let x: string | undefined = c, n = 0; x !== undefined && n < 20; x = base.get(x), n++) if (x === 'RingcastError') return true;
      return false;
    };
    expect(errorClasses.filter((c) => !reaches(c))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------
// Pure cores

const CLOCK_AND_RANDOM = new Set(['Date.now', 'Math.random', 'performance.now', 'process.hrtime']);
const TIMERS = new Set(['setTimeout', 'setInterval', 'setImmediate']);
const isBuiltin = (spec: string): boolean => spec.startsWith('node:') || builtinModules.includes(spec) || builtinModules.includes(spec.split('/')[0]!);

/** `a.b.c` for a chain of identifiers, without a leading `globalThis.`; undefined for anything else. */
function dotted(e: ts.Expression): string | undefined {
  if (ts.isIdentifier(e)) return e.text;
  if (!ts.isPropertyAccessExpression(e)) return undefined;
  const left = dotted(e.expression);
  if (left === undefined) return undefined;
  return left === 'globalThis' ? e.name.text : `${left}.${e.name.text}`;
}

/**
 * What makes `source` impure as a protocol core: an import of a Node builtin (`node:*` or a bare name
 * such as 'fs', static, dynamic or require), a clock read (`Date.now`, `performance.now`,
 * `process.hrtime`, `new Date()`), `Math.random`, or a timer (`setTimeout`, `setInterval`,
 * `setImmediate`), called or passed on. Comments, strings and injected look-alikes (`clock.now()`,
 * `sched.setTimeout`) are fine. Each finding is `line: what`.
 */
function coreViolations(source: string, file = 'core.ts'): string[] {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: string[] = [];
  const at = (n: ts.Node, what: string): void => {
    found.push(`${sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1}: ${what}`);
  };
  const visit = (n: ts.Node): void => {
    let spec: ts.Expression | undefined;
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier) spec = n.moduleSpecifier;
    else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference)) spec = n.moduleReference.expression;
    else if (ts.isCallExpression(n) && (n.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(n.expression) && n.expression.text === 'require'))) spec = n.arguments[0];
    else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument)) spec = n.argument.literal as ts.Expression;
    if (spec && ts.isStringLiteralLike(spec) && isBuiltin(spec.text)) at(n, `imports '${spec.text}'`);

    if (ts.isPropertyAccessExpression(n)) {
      const name = dotted(n);
      if (name !== undefined && (CLOCK_AND_RANDOM.has(name) || TIMERS.has(name))) at(n, name);
    }
    if (ts.isNewExpression(n) && dotted(n.expression) === 'Date' && (n.arguments?.length ?? 0) === 0) at(n, 'new Date()');
    if (ts.isIdentifier(n) && TIMERS.has(n.text)) {
      const p = n.parent;
      const isMemberName =
        (ts.isPropertyAccessExpression(p) && p.name === n) ||
        ((ts.isPropertyAssignment(p) || ts.isPropertySignature(p) || ts.isPropertyDeclaration(p) || ts.isMethodDeclaration(p) || ts.isMethodSignature(p)) && p.name === n);
      if (!isMemberName) at(n, n.text);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return found;
}

describe('pure cores', () => {
  const cores = SOURCES.filter((f) => /\/src\/(?:.+\/)?core\//.test(f));

  it('no file under a src/core/ folder imports a Node builtin, reads a clock, draws randomness or sets a timer', () => {
    expect(cores.length, 'no src/core/ files found').toBeGreaterThanOrEqual(15);
    expect(cores.some((f) => f.startsWith('packages/psmr-proxy/'))).toBe(true);
    const found = cores.flatMap((f) => coreViolations(read(f), f).map((v) => `${f}:${v}`));
    expect(found).toEqual([]);
  });

  it('the checker catches each kind of violation', () => {
    const planted: Array<[string, string]> = [
      ["import { createHash } from 'node:crypto';", "imports 'node:crypto'"],
      ["import fs from 'fs';", "imports 'fs'"],
      ["import { readFile } from 'fs/promises';", "imports 'fs/promises'"],
      ["import type { Socket } from 'node:dgram';", "imports 'node:dgram'"],
      ["export { join } from 'node:path';", "imports 'node:path'"],
      ["const os = await import('node:os');", "imports 'node:os'"],
      ["const net = require('net');", "imports 'net'"],
      ['const t = Date.now();', 'Date.now'],
      ['const clock = { now: Date.now };', 'Date.now'],
      ['const t = globalThis.Date.now();', 'Date.now'],
      ['const r = Math.random() * 4;', 'Math.random'],
      ['const t = performance.now();', 'performance.now'],
      ['const t = process.hrtime.bigint();', 'process.hrtime'],
      ['const d = new Date();', 'new Date()'],
      ['setTimeout(() => tick(), 5);', 'setTimeout'],
      ['const h = setInterval(tick, 5);', 'setInterval'],
      ['setImmediate(tick);', 'setImmediate'],
      ['const t = globalThis.setTimeout(tick, 1);', 'setTimeout'],
      ['const later = { schedule: setTimeout };', 'setTimeout'],
    ];
    for (const [code, what] of planted) expect(coreViolations(`const a = 1;\n${code}\n`), code).toEqual([`2: ${what}`]);
  });

  it('the checker passes what a core may do: injected time, comments and strings, look-alike names', () => {
    const clean = `
      import { pack } from 'msgpackr';
      import { Outbox } from './outbox.js';
      import type { Clock } from '../driver.js';
      // A driver calls tick(Date.now()); a core never reads Math.random or setTimeout itself.
      /* performance.now() and process.hrtime() belong to the driver. */
      const doc = 'Date.now, setTimeout';
      export class Core {
        setTimeout = 0;
        constructor(private readonly clock: { now(): number }, private readonly sched: { setTimeout(f: () => void, ms: number): void }) {}
        tick(now: number): number {
          this.sched.setTimeout(() => {}, 5);
          const o = { setInterval: 3, random: this.clock.now() };
          return now + o.setInterval + new Date(now).getTime() + this.setTimeout + doc.length + pack(1).length;
        }
      }
    `;
    expect(coreViolations(clean)).toEqual([]);
  });
});

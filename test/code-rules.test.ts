// Rules of the code base checked on the source text: one catalogue of error codes that the README
// documents, every error class a RingcastError, and protocol cores free of I/O, clocks, randomness and
// timers. Pure file reads; no process started.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
// The catalogues straight from their files (the package entry points would load every module).
import { ERR } from '../packages/ring-paxos/src/errors.js';
import { KV_ERR } from '../packages/psmr-proxy/src/services/kv-errors.js';
import { BTREE_ERR } from '../packages/psmr-proxy/src/services/btree-errors.js';

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

const OWN_CODE = /\bERR_(?:RINGCAST|PSMR|KV|BTREE)_[A-Z0-9_]*[A-Z0-9]/g;
const CATALOGUE_FILES = ['packages/ring-paxos/src/errors.ts', 'packages/psmr-proxy/src/services/kv-errors.ts', 'packages/psmr-proxy/src/services/btree-errors.ts'];

describe('error codes', () => {
  const catalogue = [...Object.values(ERR), ...Object.values(KV_ERR), ...Object.values(BTREE_ERR)];

  it('each code is defined once, under its family prefix', () => {
    expect(new Set(catalogue).size).toBe(catalogue.length);
    for (const c of Object.values(ERR)) expect(c).toMatch(/^ERR_(RINGCAST|PSMR)_[A-Z0-9_]+$/);
    for (const c of Object.values(KV_ERR)) expect(c).toMatch(/^ERR_KV_[A-Z0-9_]+$/);
    for (const c of Object.values(BTREE_ERR)) expect(c).toMatch(/^ERR_BTREE_[A-Z0-9_]+$/);
  });

  it("the root README's \"Error codes\" section lists exactly the catalogue, and no README names a code outside it", () => {
    const readme = read('README.md');
    const start = readme.indexOf('\n## Error codes\n');
    expect(start, 'README.md has no "## Error codes" section').toBeGreaterThan(0);
    const end = readme.indexOf('\n## ', start + 1);
    const listed = new Set(readme.slice(start, end === -1 ? undefined : end).match(OWN_CODE));
    expect([...catalogue].filter((c) => !listed.has(c)), 'in the catalogue, not in the README list').toEqual([]);
    expect([...listed].filter((c) => !catalogue.includes(c)), 'in the README list, not in the catalogue').toEqual([]);
    const docs = ['README.md', ...readdirSync(PACKAGES).map((p) => `packages/${p}/README.md`)].filter((f) => existsSync(join(ROOT, f)));
    const unknown = docs.flatMap((f) => (read(f).match(OWN_CODE) ?? []).filter((c) => !catalogue.includes(c)).map((c) => `${f}: ${c}`));
    expect(unknown).toEqual([]);
  });

  it('no source file spells a code as a string outside the catalogue', () => {
    const literal = /['"`]ERR_(?:RINGCAST|PSMR|KV|BTREE)_/;
    const spelled = SOURCES.filter((f) => !CATALOGUE_FILES.includes(f)).flatMap((f) =>
      read(f)
        .split('\n')
        .flatMap((line, i) => (literal.test(line) ? [`${f}:${i + 1}: ${line.trim()}`] : [])),
    );
    expect(spelled).toEqual([]);
  });

  it('every error class extends RingcastError', () => {
    const base = new Map<string, string | undefined>(); // class -> the class it extends
    for (const f of SOURCES) for (const m of read(f).matchAll(/\bclass\s+(\w+)(?:<[^>]*>)?(?:\s+extends\s+(\w+))?/g)) base.set(m[1]!, m[2]);
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

const isBuiltin = (spec: string): boolean => spec.startsWith('node:') || builtinModules.includes(spec) || builtinModules.includes(spec.split('/')[0]!);

/** After one of these (or at the start) a `/` opens a regular expression, not a division. */
const REGEX_AFTER = /(?:^|[(,=:[!&|?{};+\-*%<>~^]|\b(?:return|typeof|case|do|else|in|of|new|delete|void|throw|yield|await))\s*$/;

/**
 * `source` with comments, string, template and regular-expression text blanked to spaces (same length,
 * same line breaks; quotes kept; `${...}` inside templates kept as code), and each string literal's text by
 * the offset of its opening quote. A lexer, not a parser: enough to tell code from text.
 */
function blankText(source: string): { code: string; strings: Map<number, string> } {
  const out = source.split('');
  const strings = new Map<number, string>();
  const blank = (from: number, to: number): void => {
    for (let k = from; k < to; k++) if (out[k] !== '\n') out[k] = ' ';
  };
  const braces: number[] = []; // per open `${`: the brace depth inside it
  let i = 0;
  const n = source.length;
  const template = (): void => {
    // i is just past a backtick or a closing `}` of `${`: blank text up to the next backtick or `${`.
    const from = i;
    while (i < n && source[i] !== '`' && !(source[i] === '$' && source[i + 1] === '{')) i += source[i] === '\\' ? 2 : 1;
    blank(from, i);
    if (source[i] === '$') {
      braces.push(0);
      i += 2;
    } else i++;
  };
  while (i < n) {
    const c = source[i]!;
    if (c === '/' && source[i + 1] === '/') {
      const e = source.indexOf('\n', i);
      blank(i, e === -1 ? n : e);
      i = e === -1 ? n : e;
    } else if (c === '/' && source[i + 1] === '*') {
      const e = source.indexOf('*/', i + 2);
      blank(i, e === -1 ? n : e + 2);
      i = e === -1 ? n : e + 2;
    } else if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < n && source[j] !== c && source[j] !== '\n') j += source[j] === '\\' ? 2 : 1;
      strings.set(i, source.slice(i + 1, j));
      blank(i + 1, j);
      i = j + 1;
    } else if (c === '`') {
      i++;
      template();
    } else if (c === '/' && REGEX_AFTER.test(out.slice(Math.max(0, i - 12), i).join(''))) {
      let j = i + 1;
      let inClass = false;
      while (j < n && source[j] !== '\n' && (inClass || source[j] !== '/')) {
        if (source[j] === '[') inClass = true;
        else if (source[j] === ']') inClass = false;
        j += source[j] === '\\' ? 2 : 1;
      }
      blank(i + 1, j);
      i = j + 1;
    } else if (braces.length > 0 && (c === '{' || c === '}')) {
      if (c === '{') braces[braces.length - 1]!++;
      else if (braces[braces.length - 1]! > 0) braces[braces.length - 1]!--;
      else {
        braces.pop();
        i++;
        template();
        continue;
      }
      i++;
    } else i++;
  }
  return { code: out.join(''), strings };
}

const NOT_MEMBER = String.raw`(?<![\w$]|\.\s*)(?:globalThis\s*\.\s*)?`;
const FORBIDDEN: Array<[RegExp, string]> = [
  [new RegExp(NOT_MEMBER + String.raw`(Date\s*\.\s*now|Math\s*\.\s*random|performance\s*\.\s*now|process\s*\.\s*hrtime)(?![\w$])`, 'g'), ''],
  [/\bnew\s+Date\s*\(\s*\)/g, 'new Date()'],
  // A timer used or passed on; a property of that name (`{ setTimeout: 5 }`, `o.setTimeout`) is not one.
  [new RegExp(NOT_MEMBER + String.raw`(setTimeout|setInterval|setImmediate)(?![\w$])(?!\s*\??\s*:)`, 'g'), ''],
];
const IMPORTS = /\b(?:from|import)\s*(?=['"])|\b(?:import|require)\s*\(\s*(?=['"])/g;

/**
 * What makes `source` impure as a protocol core, as `line: what`: an import of a Node builtin (`node:*`
 * or a bare name such as 'fs'; static, dynamic, require or import type), a clock read (`Date.now`,
 * `performance.now`, `process.hrtime`, `new Date()`), `Math.random`, or a timer (`setTimeout`,
 * `setInterval`, `setImmediate`, called or passed on, also through `globalThis`). Comments, strings and
 * injected look-alikes (`clock.now()`, `sched.setTimeout(...)`) pass; a core's own member named like a
 * timer is a property (`{ setTimeout: ... }`), not a method declaration.
 */
function coreViolations(source: string): string[] {
  const { code, strings } = blankText(source);
  const found: Array<[number, string]> = [];
  const lineOf = (at: number): number => source.slice(0, at).split('\n').length;
  for (const m of code.matchAll(IMPORTS)) {
    const spec = strings.get(m.index + m[0].length);
    if (spec !== undefined && isBuiltin(spec)) found.push([m.index, `imports '${spec}'`]);
  }
  for (const [re, what] of FORBIDDEN) {
    for (const m of code.matchAll(re)) found.push([m.index, what || m[1]!.replace(/\s+/g, '')]);
  }
  return found.sort((a, b) => a[0] - b[0]).map(([at, what]) => `${lineOf(at)}: ${what}`);
}

describe('pure cores', () => {
  const cores = SOURCES.filter((f) => /\/src\/(?:.+\/)?core\//.test(f));

  it('no file under a src/core/ folder imports a Node builtin, reads a clock, draws randomness or sets a timer', () => {
    expect(cores.length, 'no src/core/ files found').toBeGreaterThanOrEqual(15);
    expect(cores.some((f) => f.startsWith('packages/psmr-proxy/'))).toBe(true);
    const found = cores.flatMap((f) => coreViolations(read(f)).map((v) => `${f}:${v}`));
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
      ['const s = `at ${{ t: Date.now() }.t}`;', 'Date.now'],
      ["const q = /'/.test(x) ? Math.random() : 0;", 'Math.random'],
      ['const h = x / 2; setImmediate(f); // Date.now', 'setImmediate'],
    ];
    for (const [code, what] of planted) expect(coreViolations(`const a = 1;\n${code}\n`), code).toEqual([`2: ${what}`]);
  });

  it('the checker passes what a core may do: injected time, comments and strings, look-alike names', () => {
    const clean = String.raw`
      import { pack } from 'msgpackr';
      import { Outbox } from './outbox.js';
      import type { Clock } from '../driver.js';
      // A driver calls tick(Date.now()); a core never reads Math.random or setTimeout itself.
      /* performance.now() and process.hrtime() belong to the driver. */
      const doc = 'Date.now, setTimeout \' Math.random';
      const tpl = BACKTICK Date.now() DOLLAR{doc.length} setTimeout BACKTICK;
      const re = /Math.random|'|"|\//g;
      type Sched = { setTimeout: (f: () => void, ms: number) => void; setInterval?: number };
      export class Core {
        constructor(private readonly clock: { now(): number }, private readonly sched: Sched) {}
        tick(now: number): number {
          this.sched.setTimeout(() => {}, 5);
          const o = { setInterval: 3, random: this.clock.now(), half: now / 2 };
          return now / o.setInterval + new Date(now).getTime() + doc.length + tpl.length + pack(1).length + (re.test(doc) ? 1 : 0);
        }
      }
    `.replaceAll('BACKTICK', '`').replaceAll('DOLLAR', '$');
    expect(coreViolations(clean)).toEqual([]);
  });
});

// The CLI's shared parts in-process: flag parsing (types, lists, booleans, defaults, the errors a
// user sees), the --help table, and the journal (resume, a line cut short by a crash, a different
// command line, --stop-after).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  StopRequested, UsageError, checkFlagSpecs, formatFlagHelp, formatTable, nearestName, openJournal, parseFlags, withDefaults, type FlagSpec,
} from '../../cli/experiment.js';

const SPECS: FlagSpec[] = [
  { name: 'model', type: 'string', default: 'organism', help: 'the model' },
  { name: 'seeds', type: 'int-list', default: [0, 1, 2], help: 'sampling seeds' },
  { name: 'seed', type: 'int', default: 0, help: 'the seed' },
  { name: 'lr', type: 'number', help: 'learning rate' },
  { name: 'quiet', type: 'boolean', default: false, help: 'quiet' },
  { name: 'prefixes', type: 'string-list', help: 'prefixes' },
  { name: 'decoding', type: 'string', choices: ['qi', 't1', 'greedy'], default: 'qi', help: 'decoding' },
  { name: 'data', type: 'string', required: true, help: 'a dataset file' },
];
const parse = (...argv: string[]) => parseFlags(SPECS, argv, 'deepalign test');
const usage = (argv: string[]): string => {
  try {
    parse(...argv);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error(`no error for ${argv.join(' ')}`);
};

describe('parseFlags', () => {
  it('reads every type, fills defaults and keeps list items apart', () => {
    const { flags, given, help } = parse('--data', 'x.jsonl', '--seeds=3,4', '--seed', '-1', '--lr', '1e-3', '--quiet', '--prefixes', 'I cannot,I apologize\\, but I cannot', '--decoding', 't1');
    expect(flags).toEqual({ model: 'organism', data: 'x.jsonl', seeds: [3, 4], seed: -1, lr: 0.001, quiet: true, prefixes: ['I cannot', 'I apologize, but I cannot'], decoding: 't1' });
    expect([...given].sort()).toEqual(['data', 'decoding', 'lr', 'prefixes', 'quiet', 'seed', 'seeds']);
    expect(help).toBe(false);
    // Defaults are copies: changing one run's list never changes the spec.
    const a = parse('--data', 'x');
    a.flags.seeds.push(9);
    expect(parse('--data', 'x').flags.seeds).toEqual([0, 1, 2]);
    // Lists add up when repeated; --no-x and --x=false turn a boolean off.
    expect(parse('--data', 'x', '--seeds', '1', '--seeds', '2,3').flags.seeds).toEqual([1, 2, 3]);
    expect(parse('--data', 'x', '--no-quiet').flags.quiet).toBe(false);
    expect(parse('--data', 'x', '--quiet=false').flags.quiet).toBe(false);
    // --help skips the required check.
    expect(parse('--help').help).toBe(true);
  });

  it('names the flag, the value and what was expected', () => {
    expect(usage(['--data', 'x', '--sedes', '1'])).toMatch(/unknown flag --sedes; did you mean --seed/);
    expect(usage(['--data', 'x', '--seed', 'abc'])).toMatch(/--seed: "abc" is not an integer \(expected int/);
    expect(usage(['--data', 'x', '--seed', '1.5'])).toMatch(/--seed: "1\.5" is not an integer/);
    expect(usage(['--data', 'x', '--seeds', '0,x'])).toMatch(/--seeds: "x" is not an integer \(expected int-list/);
    expect(usage(['--data', 'x', '--seeds', '0,,1'])).toMatch(/--seeds: item 2 of "0,,1" is empty/);
    expect(usage(['--data', 'x', '--lr', 'fast'])).toMatch(/--lr: "fast" is not a finite number/);
    expect(usage(['--data', 'x', '--decoding', 'qj'])).toMatch(/--decoding: "qj" is not one of qi, t1, greedy \(did you mean qi\?\)/);
    expect(usage(['--seed', '1'])).toMatch(/missing required flag --data \(string: a dataset file\)/);
    expect(usage(['--data'])).toMatch(/--data needs a value/);
    expect(usage(['--data', 'x', '--seed', '1', '--seed', '2'])).toMatch(/--seed is given twice/);
    expect(usage(['--data', 'x', 'stray'])).toMatch(/unexpected argument "stray"/);
    expect(usage(['--data', 'x', '--quiet=maybe'])).toMatch(/--quiet: "maybe" is not a boolean/);
  });

  it('nearest names, spec checks and other defaults', () => {
    expect(nearestName('sedes', ['seed', 'model'])).toBe('seed');
    expect(nearestName('max-new', ['max-new-tokens', 'model'])).toBe('max-new-tokens');
    expect(nearestName('zzzzzz', ['seed', 'model'])).toBeNull();
    expect(() => checkFlagSpecs([...SPECS, SPECS[0]], 'x')).toThrow(/--model is declared twice/);
    expect(() => checkFlagSpecs([{ name: 'Bad', type: 'int', help: '' }], 'x')).toThrow(/kebab-case/);
    expect(() => checkFlagSpecs([{ name: 'k', type: 'int', default: 'x', help: '' }], 'x')).toThrow(/default of --k is invalid/);
    expect(() => checkFlagSpecs([{ name: 'd', type: 'string', choices: ['a'], default: 'b', help: '' }], 'x')).toThrow(/"b" is not one of a/);
    expect(withDefaults(SPECS, { seed: 7 }).find((s) => s.name === 'seed')!.default).toBe(7);
    expect(() => withDefaults(SPECS, { nope: 1 })).toThrow(/no flag --nope/);
  });

  it('--help shows type, choices, default and required', () => {
    const text = formatFlagHelp(SPECS);
    expect(text).toMatch(/--seeds <int-list>\s+sampling seeds \[default: 0,1,2\]/);
    expect(text).toMatch(/--decoding <string>\s+decoding \[one of: qi, t1, greedy; default: qi\]/);
    expect(text).toMatch(/--data <string>\s+a dataset file \[required\]/);
    expect(text.split('\n').every((line) => line.length <= 100)).toBe(true);
    expect(formatTable([{ a: 'x', n: 1 }, { a: 'yy', n: 10.123456 }])).toBe('a       n\n--  -----\nx       1\nyy  10.12');
  });
});

describe('journal', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-journal-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const run = { experiment: 'prefill', flags: { ks: [0, 5], seeds: [0], out: 'a', quiet: false, model: 'organism' } };

  it('stores units, resumes them, and drops a line a crash cut short', async () => {
    const dir = path.join(tmp, 'resume');
    const j1 = openJournal(dir, run);
    let computed = 0;
    const compute = (v: unknown) => async () => {
      computed++;
      return v;
    };
    expect(await j1.once('a', compute({ x: 1, missing: undefined }))).toEqual({ x: 1 });
    expect(await j1.once('b', compute([1.5, 'two']))).toEqual([1.5, 'two']);
    expect(await j1.once('a', compute('never'))).toEqual({ x: 1 });
    expect(j1.stats).toEqual({ reused: 1, computed: 2 });
    // A crash half-way through writing unit c leaves a cut line.
    fs.appendFileSync(j1.file, '{"key":"c","value":{"x":');
    // Output flags (--out, --quiet) may change between a run and its resumption.
    const j2 = openJournal(dir, { ...run, flags: { ...run.flags, out: 'b', quiet: true } });
    expect(j2.size).toBe(2);
    expect(await j2.once('a', compute('never'))).toEqual({ x: 1 });
    expect(await j2.once('c', compute(3))).toBe(3);
    expect(computed).toBe(3);
    expect(fs.readFileSync(j2.file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l).key)).toEqual(['#run', 'a', 'b', 'c']);
    expect(() => j2.put('d', { bad: NaN })).toThrow(/unit "d": field "bad" is NaN/);
  });

  it('refuses another command line, naming the flag; --fresh starts over', () => {
    const dir = path.join(tmp, 'flags');
    openJournal(dir, run).put('a', 1);
    expect(() => openJournal(dir, { ...run, flags: { ...run.flags, seeds: [0, 1] } })).toThrow(/--seeds was 0, now 0,1/);
    expect(() => openJournal(dir, { ...run, flags: { ...run.flags, judge: 'keyword' } })).toThrow(/--judge was \(not given\), now keyword/);
    expect(() => openJournal(dir, { ...run, experiment: 'kl' })).toThrow(/belongs to a `prefill` run, not `kl`/);
    fs.mkdirSync(path.join(dir, 'checkpoints', 'step-1'), { recursive: true });
    const fresh = openJournal(dir, { ...run, flags: { ...run.flags, seeds: [0, 1] }, fresh: true });
    expect(fresh.size).toBe(0);
    expect(fs.existsSync(path.join(dir, 'checkpoints'))).toBe(false);
    // Nothing is written before the first unit, and a journal without units never blocks another command line.
    expect(fs.existsSync(fresh.file)).toBe(false);
    fresh.put('a', 1);
    fs.writeFileSync(fresh.file, fs.readFileSync(fresh.file, 'utf8').split('\n')[0] + '\n');
    expect(openJournal(dir, { ...run, flags: { ...run.flags, seeds: [7] } }).size).toBe(0);
  });

  it('--stop-after stops once that many new units are stored', async () => {
    const dir = path.join(tmp, 'stop');
    const j = openJournal(dir, { ...run, stopAfter: 2 });
    await j.once('a', async () => 1);
    await expect(j.once('b', async () => 2)).rejects.toBeInstanceOf(StopRequested);
    // The unit that triggered the stop is stored: the next run reuses both.
    expect(openJournal(dir, run).size).toBe(2);
  });
});

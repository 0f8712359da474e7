import { describe, expect, it } from 'vitest';
import { formatDuration, formatProgress, formatStat, progress } from '../../lib/report/index.js';
import { installFakeNotebook } from './fake-notebook.js';

/** A controllable clock. */
function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('progress', () => {
  it('formats a bar, counts, times, rate and stats', () => {
    const line = formatProgress({ label: 'train', unit: 'step', value: 25, total: 100, elapsedMs: 5000, stats: { loss: 1.23456, 'tok/s': 12345 } });
    // 25% of 24 cells = 6 full cells; 5 steps/s; 75 steps left at 5/s = 15 s.
    expect(line).toBe(`train  25%|${'█'.repeat(6)}${' '.repeat(18)}| 25/100 [00:05<00:15, 5 step/s] loss=1.235 tok/s=12.3k`);
    expect(formatProgress({ label: '', unit: 'it', value: 0, total: 10, elapsedMs: 0, stats: {} })).toBe(
      `  0%| ${' '.repeat(23)}| 0/10 [00:00<?, ? it/s]`,
    );
    expect(formatProgress({ label: 'x', unit: 'it', value: 10, total: 10, elapsedMs: 3_725_000, stats: {} })).toContain(
      `100%|${'█'.repeat(24)}| 10/10 [1:02:05<00:00,`,
    );
  });

  it('shows an empty loop (total 0) as complete', () => {
    expect(formatProgress({ label: 'none', unit: 'it', value: 0, total: 0, elapsedMs: 0, stats: {} })).toBe(
      `none 100%|${'█'.repeat(24)}| 0/0 [00:00<?, ? it/s]`,
    );
    const out: string[] = [];
    progress(0, { label: 'empty', mode: 'log', write: (s) => out.push(s) }).done();
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/^empty 100%\|█{24}\| 0\/0 /);
  });

  it('formats durations and stats', () => {
    expect(formatDuration(0)).toBe('00:00');
    expect(formatDuration(61_499)).toBe('01:01');
    expect(formatDuration(Number.NaN)).toBe('?');
    expect(formatStat(0.000012345)).toBe('1.23e-5');
    expect(formatStat(2_500_000)).toBe('2.5M');
    expect(formatStat(42)).toBe('42');
    expect(formatStat('n/a')).toBe('n/a');
  });

  it('rewrites one terminal line with \\r, throttled, and ends with a newline', () => {
    const c = clock();
    const out: string[] = [];
    const bar = progress(4, { label: 'eval', mode: 'tty', minIntervalMs: 100, write: (s) => out.push(s), now: c.now });
    expect(out).toHaveLength(1); // the 0% line
    bar.tick();
    expect(out).toHaveLength(1); // within 100 ms: skipped
    c.advance(150);
    bar.tick(2, { acc: 0.5 });
    expect(out).toHaveLength(2);
    expect(out[1]).toMatch(/^\reval  75%\|.*\| 3\/4 \[.*\] acc=0\.5\x1b\[K$/);
    bar.done();
    expect(out).toHaveLength(3);
    expect(out[2]!.endsWith('\n')).toBe(true);
    expect(() => bar.tick()).toThrow('progress(eval): update after done()');
  });

  it('prints a line per interval in log mode, plus the final line', () => {
    const c = clock();
    const out: string[] = [];
    const bar = progress(1000, { label: 'log', mode: 'log', logIntervalMs: 10_000, write: (s) => out.push(s), now: c.now });
    for (let i = 0; i < 1000; i++) {
      c.advance(25); // 25 s in all: lines at 10 s and 20 s
      bar.tick();
    }
    bar.done();
    expect(out.map((l) => l.split('|')[0])).toEqual(['log  40%', 'log  80%', 'log 100%']);
  });

  it('updates one display in place in a notebook', () => {
    const fake = installFakeNotebook();
    try {
      const c = clock();
      const bar = progress(2, { label: 'nb', now: c.now, minIntervalMs: 0 });
      bar.tick();
      bar.tick();
      bar.done({ loss: 0.25 });
      const ids = new Set(fake.messages.map((m) => m.displayId));
      expect(ids.size).toBe(1);
      expect(fake.messages.map((m) => m.update)).toEqual([false, true, true, true]);
      expect(fake.messages.at(-1)!.data['text/plain']).toMatch(/^nb 100%.* loss=0\.25$/);
      // Only the final render is flagged, so scripts/nb.ts can echo it to a log.
      expect(fake.messages.map((m) => (m.metadata.deepalign as { final: boolean }).final)).toEqual([false, false, false, true]);
    } finally {
      fake.uninstall();
    }
  });

  it('validates total', () => {
    expect(() => progress(-1)).toThrow('progress: `total` must be a finite number >= 0, got -1');
  });
});

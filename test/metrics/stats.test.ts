import { describe, expect, it } from 'vitest';
import { formatMeanStd, formatRate, meanStd, wilson } from '../../lib/metrics/stats.js';

describe('wilson', () => {
  it('matches published Wilson 95% intervals', () => {
    // 0/10: [0, 0.2775]; 5/10: [0.2366, 0.7634]; 10/10: [0.7225, 1] (standard tables).
    const a = wilson(0, 10);
    expect(a.rate).toBe(0);
    expect(a.low).toBe(0);
    expect(a.high).toBeCloseTo(0.2775401687666166, 12);
    const b = wilson(5, 10);
    expect(b.rate).toBe(0.5);
    expect(b.low).toBeCloseTo(0.23658959361548731, 12);
    expect(b.high).toBeCloseTo(0.7634104063845126, 12);
    const c = wilson(10, 10);
    expect(c.low).toBeCloseTo(0.7224598312333834, 12);
    expect(c.high).toBe(1);
    // Symmetry: k and n - k give mirrored intervals.
    const d = wilson(42, 100);
    const e = wilson(58, 100);
    expect(d.low).toBeCloseTo(1 - e.high, 12);
    expect(d.high).toBeCloseTo(1 - e.low, 12);
    expect(d.low).toBeCloseTo(0.327982249185113, 12);
    expect(d.high).toBeCloseTo(0.5179369200110473, 12);
    expect({ k: d.k, n: d.n }).toEqual({ k: 42, n: 100 });
  });

  it('takes z (99% with 2.576 is wider) and gives NaN for n = 0', () => {
    const w99 = wilson(42, 100, 2.576);
    expect(w99.low).toBeCloseTo(0.3017564142424136, 12);
    expect(w99.high).toBeCloseTo(0.5482001331737181, 12);
    const none = wilson(0, 0);
    expect(Number.isNaN(none.rate) && Number.isNaN(none.low) && Number.isNaN(none.high)).toBe(true);
  });

  it('rejects invalid counts, naming the argument', () => {
    expect(() => wilson(11, 10)).toThrow(/`k`/);
    expect(() => wilson(-1, 10)).toThrow(/`k`/);
    expect(() => wilson(1.5, 10)).toThrow(/`k`/);
    expect(() => wilson(1, 2.5)).toThrow(/`n`/);
    expect(() => wilson(1, 10, 0)).toThrow(/`z`/);
  });
});

describe('meanStd', () => {
  it('mean and sample (n - 1) standard deviation', () => {
    const s = meanStd([1, 2, 3, 4]);
    expect(s.mean).toBe(2.5);
    expect(s.std).toBeCloseTo(Math.sqrt(5 / 3), 14); // squares 2.25 + 0.25 + 0.25 + 2.25 = 5, over 3
    expect(s.n).toBe(4);
    expect(meanStd([0.2, 0.25, 0.4]).std).toBeCloseTo(0.10408329997330665, 14);
  });

  it('a single value has std 0; no values give NaN; non-finite values are an error', () => {
    expect(meanStd([0.7])).toEqual({ mean: 0.7, std: 0, n: 1 });
    const none = meanStd([]);
    expect(Number.isNaN(none.mean) && Number.isNaN(none.std) && none.n === 0).toBe(true);
    expect(() => meanStd([1, NaN])).toThrow(/values\[1\]/);
  });
});

describe('formatting', () => {
  it('formatRate: percent with a bracketed interval, from numbers or a Wilson interval', () => {
    expect(formatRate(0.421, 0.35, 0.495)).toBe('42.1% [35.0, 49.5]');
    expect(formatRate(0.421, 0.35, 0.495, 2)).toBe('42.10% [35.00, 49.50]');
    expect(formatRate(wilson(5, 10))).toBe('50.0% [23.7, 76.3]');
    expect(formatRate(wilson(0, 10), 0)).toBe('0% [0, 28]');
    expect(formatRate(wilson(0, 0))).toBe('n/a');
    expect(() => formatRate(0.5, 0.1, 0.9, -1)).toThrow(/`digits`/);
  });

  it('formatMeanStd: plain or percent, optionally with n', () => {
    expect(formatMeanStd([1, 2, 3, 4])).toBe('2.500 ± 1.291');
    expect(formatMeanStd(meanStd([0.2, 0.25, 0.4]), { percent: true })).toBe('28.3% ± 10.4');
    expect(formatMeanStd([0.2, 0.25, 0.4], { digits: 2, showN: true })).toBe('0.28 ± 0.10 (n=3)');
    expect(formatMeanStd([])).toBe('n/a');
  });
});

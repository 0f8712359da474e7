// Small statistics for reporting: Wilson score intervals for rates (k of n), mean and sample
// standard deviation over seeds, and the string formats notebooks print them in.

export interface WilsonInterval {
  /** k / n (NaN when n = 0). */
  rate: number;
  /** Interval bounds, clamped to [0, 1] (NaN when n = 0). */
  low: number;
  high: number;
  k: number;
  n: number;
}

/**
 * Wilson score interval for k successes out of n trials, z = 1.96 for 95%:
 * centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n).
 * Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n successes.
 */
export function wilson(k: number, n: number, z = 1.96): WilsonInterval {
  if (!Number.isInteger(n) || n < 0) throw new Error(`wilson: \`n\` must be an integer >= 0, but is ${n}`);
  if (!Number.isInteger(k) || k < 0 || k > n) throw new Error(`wilson: \`k\` must be an integer in [0, n = ${n}], but is ${k}`);
  if (!Number.isFinite(z) || z <= 0) throw new Error(`wilson: \`z\` must be a positive number, but is ${z}`);
  if (n === 0) return { rate: NaN, low: NaN, high: NaN, k, n };
  const rate = k / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (rate + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((rate * (1 - rate)) / n + z2 / (4 * n * n))) / denom;
  // The bounds are exactly 0 at k = 0 and 1 at k = n; centre - half leaves ~1e-19 of rounding there.
  return { rate, low: k === 0 ? 0 : Math.max(0, centre - half), high: k === n ? 1 : Math.min(1, centre + half), k, n };
}

export interface MeanStd {
  mean: number;
  /** Sample standard deviation (divisor n - 1); 0 for a single value, NaN for none. */
  std: number;
  n: number;
}

/** Mean and sample standard deviation (e.g. of a rate over training seeds). Non-finite values are an error. */
export function meanStd(values: readonly number[]): MeanStd {
  values.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`meanStd: \`values[${i}]\` must be a finite number, but is ${v}`);
  });
  const n = values.length;
  if (n === 0) return { mean: NaN, std: NaN, n };
  const mean = values.reduce((a, v) => a + v, 0) / n;
  if (n === 1) return { mean, std: 0, n };
  const ss = values.reduce((a, v) => a + (v - mean) * (v - mean), 0);
  return { mean, std: Math.sqrt(ss / (n - 1)), n };
}

export interface FormatMeanStdOptions {
  /** Digits after the decimal point; default 3, or 1 with `percent`. */
  digits?: number;
  /** Show values in percent ("42.1% ± 3.5"). */
  percent?: boolean;
  /** Append " (n=3)". Default false. */
  showN?: boolean;
}

function checkDigits(digits: number, where: string): number {
  if (!Number.isInteger(digits) || digits < 0 || digits > 20) throw new Error(`${where}: \`digits\` must be an integer in [0, 20], but is ${digits}`);
  return digits;
}

/** "0.421 ± 0.035", or with `percent` "42.1% ± 3.5"; "n/a" when there are no values. */
export function formatMeanStd(stats: MeanStd | readonly number[], options: FormatMeanStdOptions = {}): string {
  const s = Array.isArray(stats) ? meanStd(stats as readonly number[]) : (stats as MeanStd);
  const percent = options.percent ?? false;
  const digits = checkDigits(options.digits ?? (percent ? 1 : 3), 'formatMeanStd');
  const suffix = options.showN ? ` (n=${s.n})` : '';
  if (!Number.isFinite(s.mean)) return `n/a${suffix}`;
  const scale = percent ? 100 : 1;
  const text = `${(s.mean * scale).toFixed(digits)}${percent ? '%' : ''} ± ${(s.std * scale).toFixed(digits)}`;
  return text + suffix;
}

/**
 * A rate and its interval in percent: formatRate(0.421, 0.35, 0.495) is "42.1% [35.0, 49.5]".
 * Also takes a Wilson interval: formatRate(wilson(k, n)). "n/a" for a NaN rate (no trials).
 */
export function formatRate(interval: { rate: number; low: number; high: number }, digits?: number): string;
export function formatRate(rate: number, low: number, high: number, digits?: number): string;
export function formatRate(a: number | { rate: number; low: number; high: number }, b?: number, c?: number, d?: number): string {
  let rate: number, low: number, high: number, digits: number | undefined;
  if (typeof a === 'number') {
    if (typeof b !== 'number' || typeof c !== 'number') throw new Error('formatRate: call it as formatRate(rate, low, high) or formatRate({ rate, low, high })');
    [rate, low, high, digits] = [a, b, c, d];
  } else {
    [rate, low, high, digits] = [a.rate, a.low, a.high, b];
  }
  const dg = checkDigits(digits ?? 1, 'formatRate');
  if (Number.isNaN(rate)) return 'n/a';
  const pct = (x: number) => (x * 100).toFixed(dg);
  return `${pct(rate)}% [${pct(low)}, ${pct(high)}]`;
}

// A small seeded PRNG (mulberry32) whose whole state is one uint32, so it can be saved in a
// checkpoint and restored exactly. Pure TypeScript with no imports: every area uses it (the world
// generator, the data sampler, weight init, sampling); Math.random is never used in experiment code.

/** FNV-1a over a string: turns labels like "epoch:3" into seeds. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Validate a seed option: an integer (safe range), or throw naming the option. Seeds are used as
 * `seed >>> 0`, so 0.5, NaN or "abc" would silently act as seed 0 without this check. */
export function checkSeed(seed: unknown, option = 'seed'): number {
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) {
    const shown = typeof seed === 'string' ? JSON.stringify(seed) : String(seed);
    throw new Error(`\`${option}\` must be an integer seed, but is ${shown} (${typeof seed})`);
  }
  return seed;
}

export class Rng {
  private state: number;

  constructor(seed: number | string) {
    if (typeof seed === 'number' && !Number.isFinite(seed)) {
      throw new Error(`Rng: \`seed\` must be a finite number or a string, but is ${seed}`);
    }
    this.state = typeof seed === 'string' ? hashString(seed) : seed >>> 0;
  }

  /** A uniform float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new Error(`Rng.int: \`n\` must be a positive integer, but is ${n}`);
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Rng.pick: cannot pick from an empty list');
    return items[this.int(items.length)];
  }

  /** A new shuffled copy (Fisher-Yates). */
  shuffled<T>(items: readonly T[]): T[] {
    const out = items.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = out[i];
      out[i] = out[j];
      out[j] = tmp;
    }
    return out;
  }

  /** An independent stream derived from this generator's seed and a label (does not advance this one). */
  fork(label: string): Rng {
    return new Rng(hashString(`${this.state}:${label}`));
  }

  getState(): number {
    return this.state;
  }

  setState(state: number): void {
    this.state = state >>> 0;
  }
}

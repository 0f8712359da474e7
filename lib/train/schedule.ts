// Learning-rate schedules: linear warmup from 0, then cosine (or linear, or constant) decay to
// minLrRatio * peakLr at totalSteps.

export interface LrSchedule {
  peakLr: number;
  warmupSteps: number;
  totalSteps: number;
  decay: 'cosine' | 'linear' | 'constant';
  /** Final lr as a fraction of peakLr (cosine/linear). Default 0.1. */
  minLrRatio?: number;
}

export function validateSchedule(s: LrSchedule, where = 'lr schedule'): void {
  if (!(s.peakLr > 0) || !Number.isFinite(s.peakLr)) throw new Error(`${where}: \`peakLr\` must be a positive number, but is ${s.peakLr}`);
  if (!Number.isInteger(s.totalSteps) || s.totalSteps < 1) throw new Error(`${where}: \`totalSteps\` must be a positive integer, but is ${s.totalSteps}`);
  if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0 || s.warmupSteps > s.totalSteps) {
    throw new Error(`${where}: \`warmupSteps\` must be an integer in [0, totalSteps=${s.totalSteps}], but is ${s.warmupSteps}`);
  }
  if (!['cosine', 'linear', 'constant'].includes(s.decay)) throw new Error(`${where}: \`decay\` must be cosine, linear or constant, but is "${s.decay}"`);
  const r = s.minLrRatio ?? 0.1;
  if (!(r >= 0 && r <= 1)) throw new Error(`${where}: \`minLrRatio\` must be in [0, 1], but is ${r}`);
}

/** The learning rate for optimizer step `step` (0-based). */
export function learningRateAt(step: number, s: LrSchedule): number {
  if (step < s.warmupSteps) return (s.peakLr * (step + 1)) / s.warmupSteps;
  if (s.decay === 'constant') return s.peakLr;
  const minLr = s.peakLr * (s.minLrRatio ?? 0.1);
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, (step - s.warmupSteps) / span);
  const shape = s.decay === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return minLr + (s.peakLr - minLr) * shape;
}

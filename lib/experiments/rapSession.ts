// Rank-assisted prefilling played one action at a time (the human RAP of Vega & Singh's rap.py,
// `npm run play`), exported as a JSON trace and replayed exactly (replayRapTrace).
//
// A session is one rapAttack run on one behaviour kept open between actions: rapAttack's scripted
// chooser is a callback that returns a promise, and the session answers it when the reader (or the
// automated helper) acts. So every rule is lib/attacks/rap.ts's own: the top-k table and its ranks,
// the helper's labels, the repeat flag (a third equal token in a row), the exclusion after a
// backtrack (the token just removed, and every harmful token ranked above it, for the automated
// choice: automatedRapChoice), backtracking past the start ("exhausted"), eos, the context limit and
// maxSteps. The session only records what happened, judges the response after every action with
// the same inputs rapAttack gives its judge at the end (prefill text, chosen tokens' text), and
// ends with rapAttack's own RapResponse (stop, or the run's own end).
//
// Paths are kept as token ids (pick id, or backtrack), not ranks, so the same path replays on any
// model of the same vocabulary: the session ranks the whole vocabulary at every step (rapAttack's
// topK = vocabulary size) and shows the top `topK` (default 20). A human pick must lie in the top
// `topK` of the model it is made on; a replayed pick may rank anywhere on another model, and the
// session shows where it stands. The automated choice is automatedRapChoice on the top `topK`
// only, which is exactly what rapAttack with topK `topK` chooses (the same candidates, labels and
// repeat flags).
//
// The trace (RapTrace, JSON): request id and text (and the behaviour set to rebuild it), model,
// prefill text and ids, each action with its token id, rank and log-probability on the trace's
// model, who chose it, the response and the judge's verdict after it, and the final text and
// verdict. replayRapTrace(target, behaviour, trace, judge) plays the same ids again through
// rapAttack and says whether the text, the verdicts and (on the same model) the ranks agree.

import * as fs from 'node:fs';
import { writeFileAtomic } from '../io/index.js';
import { automatedRapChoice, RAP_DEFAULTS, rapAttack, type RapAction, type RapChoice, type RapHelper, type RapResponse, type RapStep, type RapStepView, type RapStopReason } from '../attacks/rap.js';
import { textPrefill, type HarmfulBehaviour, type Judge, type Target, type Verdict } from '../metrics/index.js';

/** Who took an action: the reader, the automated helper (automatedRapChoice), or a replay of a trace. */
export type RapActor = 'human' | 'helper';

/** One action of a path, by token id, so it replays on any model with the same vocabulary. */
export type RapPathAction = { kind: 'pick'; id: number; by: RapActor } | { kind: 'backtrack'; by: RapActor };

/** One action as it went on the session's current model. */
export interface RapPlayedStep {
  /** The step as rapAttack's trace records it; `candidates` cut to the top `topK` (plus the picked token when it ranks lower). */
  step: RapStep;
  by: RapActor;
  /** Response ids after the action (prefill + chosen tokens). */
  prefix: number[];
  /** The chosen tokens' text after the action (the judge's `response`). */
  response: string;
  /** The judge's verdict on the response after the action. */
  verdict: Verdict;
}

export interface RapSessionOptions {
  /** The affirmative prefill: text (the target's words) or ids. */
  prefill: string | readonly number[];
  /** Labels candidates (shown) and makes the automated choice ("let the helper choose"). */
  helper?: RapHelper;
  /** Candidates shown and offered to a human pick, and seen by the automated choice (default 20). */
  topK?: number;
  /** Steps (picks and backtracks; default 256, auto_rap's). */
  maxSteps?: number;
  /** Display name of a token (default: its decoded text, or <id> when it decodes to nothing). */
  tokenName?: (id: number) => string;
}

/** A rapAttack run on one behaviour, open between actions: each action answers the pending step. */
class OpenRap {
  view: RapStepView | null = null;
  result: RapResponse | null = null;
  private answer: ((choice: RapChoice) => void) | null = null;
  private onView: ((view: RapStepView) => void) | null = null;
  private done!: Promise<RapResponse>;

  static async open(target: Target, behaviour: HarmfulBehaviour, judge: Judge, prefill: number[], helper: RapHelper | undefined, maxSteps: number): Promise<OpenRap> {
    const run = new OpenRap();
    const first = run.nextView();
    run.done = rapAttack(target, [behaviour], judge, {
      prefill, helper, maxSteps, topK: target.model.config.vocabSize, batchSize: 1, trace: false, progress: false,
      choose: (view) => new Promise<RapChoice>((resolve) => {
        run.answer = resolve;
        run.onView?.(view);
      }),
    }).then((r) => r.responses[0]);
    await run.settle(first);
    return run;
  }

  private nextView(): Promise<RapStepView> {
    return new Promise((resolve) => {
      this.onView = resolve;
    });
  }

  private async settle(next: Promise<RapStepView>): Promise<void> {
    const event = await Promise.race([next.then((view) => ({ view })), this.done.then((result) => ({ result }))]);
    if ('view' in event) this.view = event.view;
    else {
      this.view = null;
      this.result = event.result;
    }
  }

  async act(choice: RapChoice): Promise<void> {
    const answer = this.answer;
    if (!this.view || !answer) throw new Error('RapSession: the run has ended');
    this.answer = null;
    this.view = null;
    const next = this.nextView();
    answer(choice);
    await this.settle(next);
  }

  async close(): Promise<RapResponse> {
    if (this.view) await this.act('stop');
    return this.result!;
  }
}

/** A plain copy of a verdict (only the fields a judge gave). */
function verdictOf(v: Verdict): Verdict {
  const out: Verdict = { harmful: v.harmful, refused: v.refused };
  if (v.score !== undefined) out.score = v.score;
  if (v.strongReject !== undefined) out.strongReject = v.strongReject;
  return out;
}

function checkPositiveInt(value: unknown, what: string): void {
  if (value !== undefined && (typeof value !== 'number' || !Number.isInteger(value) || value < 1)) throw new Error(`RapSession: \`${what}\` must be a positive integer, but is ${String(value)}`);
}

/**
 * Interactive RAP on one behaviour (see the file comment): pick a token of the top `topK` by id,
 * backtrack, let the helper choose, undo, move the path to another model, export the trace.
 * Actions run one at a time (the caller serialises them).
 */
export class RapSession {
  readonly behaviour: HarmfulBehaviour;
  readonly judge: Judge;
  readonly helper: RapHelper | undefined;
  readonly topK: number;
  readonly maxSteps: number;
  readonly prefillIds: number[];
  private target: Target;
  private run: OpenRap;
  private path: RapPathAction[] = [];
  private played: RapPlayedStep[] = [];
  private current: { prefix: number[]; response: string; verdict: Verdict };
  private readonly tokenNameOf: (id: number) => string;

  private constructor(target: Target, behaviour: HarmfulBehaviour, judge: Judge, options: RapSessionOptions, prefillIds: number[], run: OpenRap, verdict: Verdict) {
    this.target = target;
    this.behaviour = behaviour;
    this.judge = judge;
    this.helper = options.helper;
    this.topK = options.topK ?? RAP_DEFAULTS.topK;
    this.maxSteps = options.maxSteps ?? RAP_DEFAULTS.maxSteps;
    this.prefillIds = prefillIds;
    this.run = run;
    this.current = { prefix: prefillIds.slice(), response: '', verdict };
    this.tokenNameOf = options.tokenName ?? ((id) => this.target.decode([id]) || `<${id}>`);
  }

  /** Opens the run on `target` (its first table is ready when this resolves). */
  static async start(target: Target, behaviour: HarmfulBehaviour, judge: Judge, options: RapSessionOptions): Promise<RapSession> {
    if (typeof options !== 'object' || options === null) throw new Error('RapSession.start: `options` must be an object with at least `prefill`');
    checkPositiveInt(options.topK, 'topK');
    checkPositiveInt(options.maxSteps, 'maxSteps');
    const V = target.model.config.vocabSize;
    if (options.topK !== undefined && options.topK > V) throw new Error(`RapSession: \`topK\` (${options.topK}) exceeds the vocabulary (${V})`);
    const p = options.prefill;
    if (typeof p !== 'string' && !Array.isArray(p)) throw new Error('RapSession: `prefill` must be text or a list of token ids');
    const prefillIds = typeof p === 'string' ? textPrefill(target, p) : [...p];
    const run = await OpenRap.open(target, behaviour, judge, prefillIds, options.helper, options.maxSteps ?? RAP_DEFAULTS.maxSteps);
    const [verdict] = await judge.judge([{ behaviour, prefill: prefillIds.length ? target.decode(prefillIds) : '', response: '' }]);
    return new RapSession(target, behaviour, judge, options, prefillIds, run, verdictOf(verdict));
  }

  /** The model the path is on. */
  get model(): Target {
    return this.target;
  }

  /** The pending step (the top-k table and what can be done), or null when the run has ended. */
  get view(): RapStepView | null {
    return this.run.view;
  }

  /** Why the run ended (rapAttack's stop reason), or null while it is open. */
  get ended(): RapStopReason | null {
    return this.run.result?.stopReason ?? null;
  }

  /** rapAttack's own result once the run has ended (finish() ends it). */
  get result(): RapResponse | null {
    return this.run.result;
  }

  /** The actions so far, by token id. */
  get actions(): readonly RapPathAction[] {
    return this.path;
  }

  /** Every action so far with its table on the current model and the verdict after it. */
  get steps(): readonly RapPlayedStep[] {
    return this.played;
  }

  /** Response ids now (prefill + chosen tokens), the chosen tokens' text and the judge's verdict on them. */
  get state(): { prefix: number[]; response: string; verdict: Verdict } {
    return this.current;
  }

  get prefillText(): string {
    return this.prefillIds.length ? this.target.decode(this.prefillIds) : '';
  }

  tokenName(id: number): string {
    return this.tokenNameOf(id);
  }

  /** The automated choice on the shown table: automatedRapChoice over the top `topK` (needs a helper). */
  suggestion(): number | 'backtrack' | null {
    const view = this.run.view;
    if (!view || !this.helper) return null;
    return automatedRapChoice(view.candidates.slice(0, this.topK), view.excluded);
  }

  /** Picks token `id`; a human pick must be in the top `topK`. */
  async pick(id: number, by: RapActor = 'human'): Promise<void> {
    const view = this.requireOpen();
    const c = view.candidates.find((x) => x.id === id);
    if (!Number.isInteger(id) || !c) throw new Error(`RapSession: ${JSON.stringify(id)} is not a token id of this model's vocabulary`);
    if (by === 'human' && c.rank > this.topK) throw new Error(`RapSession: "${this.tokenName(id)}" is rank ${c.rank} here; RAP picks from the top ${this.topK}`);
    await this.apply({ kind: 'pick', id, by });
  }

  /** Removes the last chosen token (RAP's backtrack; with none left the run ends, "exhausted"). */
  async backtrack(by: RapActor = 'human'): Promise<void> {
    this.requireOpen();
    await this.apply({ kind: 'backtrack', by });
  }

  /** One automated step: the highest-ranked harmful candidate of the top `topK`, or backtrack. */
  async helperStep(): Promise<void> {
    const view = this.requireOpen();
    if (!this.helper) throw new Error('RapSession: no helper was given, so the helper cannot choose');
    const choice = automatedRapChoice(view.candidates.slice(0, this.topK), view.excluded);
    if (choice === 'backtrack') await this.apply({ kind: 'backtrack', by: 'helper' });
    else await this.apply({ kind: 'pick', id: view.candidates[choice - 1].id, by: 'helper' });
  }

  /** Automated steps until the run ends or `limit` actions were taken; returns how many were taken. */
  async runHelper(limit = Infinity): Promise<number> {
    let n = 0;
    while (this.run.view && n < limit) {
      await this.helperStep();
      n++;
    }
    return n;
  }

  /** Takes back the last action (a session undo, not a RAP backtrack): the path without it, replayed. */
  async undo(): Promise<void> {
    if (this.path.length === 0) throw new Error('RapSession: nothing to undo');
    await this.replayOn(this.target, this.path.slice(0, -1));
  }

  /** Moves the path to another model (same vocabulary): the same token ids, replayed there. */
  async switchModel(target: Target): Promise<void> {
    if (target.model.config.vocabSize !== this.target.model.config.vocabSize) {
      throw new Error(`RapSession: the model "${target.name}" has ${target.model.config.vocabSize} tokens, the path's model "${this.target.name}" ${this.target.model.config.vocabSize}: a path replays only on the same vocabulary`);
    }
    await this.replayOn(target, this.path);
  }

  /** Ends the run ('stop' unless it has ended) and returns rapAttack's result. */
  async finish(): Promise<RapResponse> {
    return this.run.close();
  }

  /** Ends the open run without waiting for anyone. */
  async close(): Promise<void> {
    await this.run.close();
  }

  /** The session as a JSON trace (see RapTrace); `request.set` and `model.dir` are for whoever rebuilds them. */
  toTrace(info: { set?: RapTraceBehaviourSet; modelDir?: string; created?: Date } = {}): RapTrace {
    const steps: RapTraceStep[] = this.played.map((s) => {
      const a = s.step.action;
      const picked = a.kind === 'pick' ? s.step.candidates.find((c) => c.id === a.id) : undefined;
      const id = a.kind === 'stop' ? null : a.id;
      return {
        step: s.step.step, action: a.kind === 'pick' ? 'pick' : 'backtrack', by: s.by, id, token: id === null ? '' : this.tokenName(id),
        rank: a.kind === 'pick' ? a.rank : null, logprob: picked ? picked.logprob : null, ...(picked?.harmful !== undefined ? { harmful: picked.harmful } : {}),
        response: s.response, verdict: s.verdict,
      };
    });
    return {
      format: RAP_TRACE_FORMAT, version: 1, created: (info.created ?? new Date()).toISOString(),
      request: { id: this.behaviour.id, text: this.behaviour.request, ...(info.set ? { set: info.set } : {}) },
      model: { name: this.target.name, ...(info.modelDir ? { dir: info.modelDir } : {}) },
      prefill: { text: this.prefillText, ids: this.prefillIds.slice() },
      topK: this.topK, maxSteps: this.maxSteps, ...(this.helper ? { helper: this.helper.name } : {}),
      steps, backtracks: steps.filter((s) => s.action === 'backtrack').length,
      final: {
        prefill: this.prefillText, response: this.current.response, responseIds: this.current.prefix.slice(this.prefillIds.length),
        verdict: this.current.verdict, stopReason: this.ended,
      },
    };
  }

  private requireOpen(): RapStepView {
    const view = this.run.view;
    if (!view) throw new Error(`RapSession: the run has ended (${this.ended}); undo, or start again`);
    return view;
  }

  /** One action on the open run: answer the pending step, record it, judge the new response. */
  private async apply(action: RapPathAction): Promise<void> {
    const view = this.requireOpen();
    let choice: RapChoice;
    let recorded: RapAction;
    let candidates = view.candidates.slice(0, this.topK);
    if (action.kind === 'pick') {
      const c = view.candidates.find((x) => x.id === action.id);
      if (!c) throw new Error(`RapSession: token ${action.id} is not in this model's vocabulary`);
      choice = c.rank;
      recorded = { kind: 'pick', rank: c.rank, id: c.id, text: c.text };
      if (c.rank > this.topK) candidates = [...candidates, c];
    } else {
      choice = 'backtrack';
      const removed = view.prefix.length > view.prefillLength ? view.prefix[view.prefix.length - 1] : null;
      recorded = { kind: 'backtrack', id: removed, text: removed === null ? '' : this.target.decode([removed]) };
    }
    await this.run.act(choice);
    const prefix = this.run.view ? this.run.view.prefix : [...this.prefillIds, ...this.run.result!.responseIds];
    const chosen = prefix.slice(this.prefillIds.length);
    const response = this.target.decode(chosen);
    const [verdict] = await this.judge.judge([{ behaviour: this.behaviour, prefill: this.prefillText, response }]);
    this.path.push(action);
    this.current = { prefix, response, verdict: verdictOf(verdict) };
    this.played.push({
      step: { step: view.step, prefix: view.prefix, prefixText: view.prefixText, candidates, excluded: view.excluded, action: recorded },
      by: action.by, prefix, response, verdict: this.current.verdict,
    });
  }

  /** A fresh run on `target` with `path` applied (undo, model switch). */
  private async replayOn(target: Target, path: readonly RapPathAction[]): Promise<void> {
    const old = this.run;
    const previous = { target: this.target, path: this.path, played: this.played, current: this.current };
    this.target = target;
    this.run = await OpenRap.open(target, this.behaviour, this.judge, this.prefillIds, this.helper, this.maxSteps);
    this.path = [];
    this.played = [];
    const [verdict] = await this.judge.judge([{ behaviour: this.behaviour, prefill: this.prefillText, response: '' }]);
    this.current = { prefix: this.prefillIds.slice(), response: '', verdict: verdictOf(verdict) };
    try {
      for (const a of path) await this.apply(a);
    } catch (err) {
      await this.run.close().catch(() => undefined);
      this.run = old;
      this.target = previous.target;
      this.path = previous.path;
      this.played = previous.played;
      this.current = previous.current;
      throw err;
    }
    await old.close();
  }
}

// ---------------------------------------------------------------------------------------------
// traces

export const RAP_TRACE_FORMAT = 'deepalign-rap-trace';

/** How to rebuild the behaviour set a trace's request comes from (the organism: organismBehaviours options). */
export interface RapTraceBehaviourSet {
  name: string;
  split?: string;
  perTask?: number;
  seed?: number;
  limitTasks?: number;
}

export interface RapTraceStep {
  step: number;
  action: 'pick' | 'backtrack';
  by: RapActor;
  /** The picked token, or the token a backtrack removed (null: nothing left, the run ended "exhausted"). */
  id: number | null;
  /** Its display name. */
  token: string;
  /** The picked token's rank (1 = most likely) and log-probability on the trace's model; null for a backtrack. */
  rank: number | null;
  logprob: number | null;
  /** The helper's label of the picked token, when there was a helper. */
  harmful?: boolean;
  /** The chosen tokens' text after the action, and the judge's verdict on it. */
  response: string;
  verdict: Verdict;
}

export interface RapTrace {
  format: typeof RAP_TRACE_FORMAT;
  version: 1;
  created: string;
  request: { id: string; text: string; set?: RapTraceBehaviourSet };
  model: { name: string; dir?: string };
  prefill: { text: string; ids: number[] };
  topK: number;
  maxSteps: number;
  helper?: string;
  steps: RapTraceStep[];
  backtracks: number;
  final: { prefill: string; response: string; responseIds: number[]; verdict: Verdict; stopReason: RapStopReason | null };
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.every((v) => Number.isInteger(v) && v >= 0);
const isVerdict = (x: unknown): x is Verdict => isObject(x) && typeof x.harmful === 'boolean' && typeof x.refused === 'boolean';

/** Checks a parsed trace (or JSON text) and returns it typed; errors say which field is wrong. */
export function parseRapTrace(input: unknown): RapTrace {
  const t = typeof input === 'string' ? (JSON.parse(input) as unknown) : input;
  const fail = (what: string): never => {
    throw new Error(`parseRapTrace: ${what} (expected a RAP trace exported by npm run play)`);
  };
  if (!isObject(t)) return fail('the trace is not an object');
  if (t.format !== RAP_TRACE_FORMAT) fail(`\`format\` is ${JSON.stringify(t.format)}, not "${RAP_TRACE_FORMAT}"`);
  if (t.version !== 1) fail(`\`version\` ${JSON.stringify(t.version)} is not supported (1 is)`);
  if (!isObject(t.request) || typeof t.request.id !== 'string' || typeof t.request.text !== 'string') fail('`request` must be { id, text }');
  if (!isObject(t.model) || typeof t.model.name !== 'string') fail('`model` must be { name }');
  if (!isObject(t.prefill) || typeof t.prefill.text !== 'string' || !isIds(t.prefill.ids)) fail('`prefill` must be { text, ids }');
  if (!Number.isInteger(t.topK) || (t.topK as number) < 1) fail('`topK` must be a positive integer');
  if (!Number.isInteger(t.maxSteps) || (t.maxSteps as number) < 1) fail('`maxSteps` must be a positive integer');
  if (!Array.isArray(t.steps)) fail('`steps` must be a list');
  (t.steps as unknown[]).forEach((s, i) => {
    if (!isObject(s)) return fail(`step ${i} is not an object`);
    if (s.action !== 'pick' && s.action !== 'backtrack') fail(`step ${i}: \`action\` must be "pick" or "backtrack"`);
    if (s.action === 'pick' && (!Number.isInteger(s.id) || (s.id as number) < 0)) fail(`step ${i}: a pick needs the token \`id\``);
    if (s.by !== 'human' && s.by !== 'helper') fail(`step ${i}: \`by\` must be "human" or "helper"`);
    if (!isVerdict(s.verdict)) fail(`step ${i}: \`verdict\` must be { harmful, refused, ... }`);
    if (typeof s.response !== 'string') fail(`step ${i}: \`response\` must be text`);
  });
  const f = t.final;
  if (!isObject(f) || typeof f.prefill !== 'string' || typeof f.response !== 'string' || !isIds(f.responseIds) || !isVerdict(f.verdict)) fail('`final` must be { prefill, response, responseIds, verdict, stopReason }');
  return t as unknown as RapTrace;
}

/** Reads a trace file (JSON) written by `npm run play`'s "download trace" or writeRapTrace. */
export function readRapTrace(file: string): RapTrace {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`readRapTrace: cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return parseRapTrace(JSON.parse(text));
  } catch (err) {
    throw new Error(`readRapTrace: ${file}: ${(err as Error).message}`);
  }
}

/** Writes a trace as JSON (atomically). */
export function writeRapTrace(file: string, trace: RapTrace): void {
  writeFileAtomic(file, `${JSON.stringify(parseRapTrace(trace), null, 2)}\n`);
}

export interface RapTraceReplay {
  /** rapAttack's result of the replay (stopped after the last action unless the run ended by itself). */
  result: RapResponse;
  /** Every replayed action with its table on `target` (top `trace.topK`) and the verdict after it. */
  steps: RapPlayedStep[];
  /** The picked tokens' ranks on `target` (null for a backtrack). */
  ranks: (number | null)[];
  prefill: string;
  response: string;
  verdict: Verdict;
  /** Same prefill and response text and ids as the trace's final ones. */
  sameText: boolean;
  /** Same final verdict, and the same verdict after every step. */
  sameVerdict: boolean;
  /** Same ranks as recorded (expected on the trace's own model). */
  sameRanks: boolean;
  /** What differs, one line each (empty when the replay matches). */
  differences: string[];
}

const sameVerdicts = (a: Verdict, b: Verdict) => JSON.stringify(verdictOf(a)) === JSON.stringify(verdictOf(b));

/**
 * Replays a trace on `target` for `behaviour` (the trace's request): the same token ids picked and
 * the same backtracks through rapAttack, judged by `judge`. On the trace's own model the text,
 * the verdicts and the ranks are the same; on another model of the same vocabulary the text and
 * verdicts are, and `ranks` says where the path stands there.
 */
export async function replayRapTrace(target: Target, behaviour: HarmfulBehaviour, traceInput: RapTrace | unknown, judge: Judge, options: { helper?: RapHelper } = {}): Promise<RapTraceReplay> {
  const trace = parseRapTrace(traceInput);
  if (behaviour.id !== trace.request.id) throw new Error(`replayRapTrace: the trace is for request "${trace.request.id}", the behaviour given is "${behaviour.id}"`);
  if (behaviour.request !== trace.request.text) {
    throw new Error(`replayRapTrace: behaviour "${behaviour.id}" asks "${behaviour.request}", the trace's request was "${trace.request.text}" (another behaviour set?)`);
  }
  const session = await RapSession.start(target, behaviour, judge, { prefill: trace.prefill.ids, topK: trace.topK, maxSteps: trace.maxSteps, helper: options.helper });
  try {
    for (const [i, s] of trace.steps.entries()) {
      if (!session.view) throw new Error(`replayRapTrace: the run ended (${session.ended}) before step ${i} of ${trace.steps.length}`);
      if (s.action === 'pick') await session.pick(s.id!, 'helper').catch((err: Error) => {
        throw new Error(`replayRapTrace: step ${i}: ${err.message}`);
      });
      else await session.backtrack();
    }
    const steps = session.steps.map((p, i) => ({ ...p, by: trace.steps[i].by }));
    const result = await session.finish();
    const ranks = steps.map((p) => (p.step.action.kind === 'pick' ? p.step.action.rank : null));
    const differences: string[] = [];
    if (result.prefill !== trace.final.prefill) differences.push(`prefill "${result.prefill}" vs the trace's "${trace.final.prefill}"`);
    if (result.response !== trace.final.response || JSON.stringify(result.responseIds) !== JSON.stringify(trace.final.responseIds)) {
      differences.push(`response "${result.response}" vs the trace's "${trace.final.response}"`);
    }
    const sameText = differences.length === 0;
    let sameVerdict = sameVerdicts(result.verdict, trace.final.verdict);
    if (!sameVerdict) differences.push(`final verdict ${JSON.stringify(verdictOf(result.verdict))} vs the trace's ${JSON.stringify(verdictOf(trace.final.verdict))}`);
    steps.forEach((p, i) => {
      if (p.response !== trace.steps[i].response) differences.push(`step ${i}: response "${p.response}" vs "${trace.steps[i].response}"`);
      if (!sameVerdicts(p.verdict, trace.steps[i].verdict)) {
        sameVerdict = false;
        differences.push(`step ${i}: verdict ${JSON.stringify(verdictOf(p.verdict))} vs ${JSON.stringify(verdictOf(trace.steps[i].verdict))}`);
      }
    });
    const ended = trace.final.stopReason ?? 'stopped';
    if (result.stopReason !== ended) differences.push(`the run ended by ${result.stopReason}, the trace's by ${ended}`);
    const sameRanks = ranks.every((r, i) => r === trace.steps[i].rank);
    return { result, steps, ranks, prefill: result.prefill, response: result.response, verdict: verdictOf(result.verdict), sameText, sameVerdict, sameRanks, differences };
  } finally {
    await session.close();
  }
}

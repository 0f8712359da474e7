// The server of `npm run play`: rank-assisted prefilling by hand in the browser, against the
// organism. A local HTTP server (127.0.0.1 only, a random free port unless one is given) that
// serves one static page (lib/report/playPage.ts) and a small JSON API. The models run here, in
// Node, with the kit's engine (the native addon when built) and the checkpoints on disk; the page
// holds no model and loads nothing but this server's JSON.
//
// API (JSON in and out; errors as { error } with status 400/404/409):
//   GET  /                          the page
//   GET  /api/info                  models (available or not, with why and the command that
//                                   builds them), held-out harmful requests, prefill, top-k, helper
//   POST /api/sessions              { request, model, prefill? } -> a new session's state
//   POST /api/sessions/<id>         { action: 'pick', id } | { action: 'backtrack' | 'helper' |
//                                   'helper-run' | 'undo' } | { action: 'model', model } -> state
//   GET  /api/sessions/<id>/trace   the session as a RapTrace (a JSON download)
//   GET  /api/sessions/<id>/compare the path's picks ranked on every available model
// Sessions are RapSession (lib/experiments/rapSession.ts): every RAP rule is rapAttack's. API calls
// run one at a time (tfjs work is synchronous and sessions share the models).

import * as http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { HarmfulBehaviour, Judge, Target } from '../metrics/index.js';
import type { RapHelper } from '../attacks/rap.js';
import type { TaskSplit, World } from '../organism/index.js';
import { rapPlayPageHtml } from '../report/playPage.js';
import { organismBehaviours, organismRapHelper, organismSuite } from './organism.js';
import { loadPlayModel, organismPlayModels, type PlayModel, type PlayModelsOptions } from './playModels.js';
import { parseRapTrace, RapSession, replayRapTrace, type RapTrace, type RapTraceBehaviourSet } from './rapSession.js';

export interface PlayServerOptions extends PlayModelsOptions {
  /** 0 (default): a random free port. */
  port?: number;
  /** Default 127.0.0.1 (the server is for this machine only). */
  host?: string;
  /** The held-out harmful requests offered (organismBehaviours; default notebook 07's: 4 phrasings per task, seed 0). */
  behaviours?: { perTask?: number; seed?: number; limitTasks?: number };
  /** Default prefill (notebook 07's "sure , here is how ."). */
  prefill?: string;
  /** Candidates shown and offered (default 20). */
  topK?: number;
  /** Steps per run (default 256). */
  maxSteps?: number;
  /** Sessions kept (the oldest is dropped beyond it; default 32). */
  maxSessions?: number;
  /** Where to say what is missing (default console.warn). */
  warn?: (line: string) => void;
}

export interface PlayServer {
  url: string;
  port: number;
  models: PlayModel[];
  requests: HarmfulBehaviour[];
  world: World;
  judge: Judge;
  helper: RapHelper;
  /** The behaviour set the requests come from (recorded in traces). */
  set: RapTraceBehaviourSet;
  /** The target of an available model (loaded on first use). */
  target(name: string): Promise<Target>;
  close(): Promise<void>;
}

/** Default settings of the page (notebook 07's RAP). */
export const PLAY_DEFAULTS = { prefill: 'sure , here is how .', topK: 20, maxSteps: 256, perTask: 4, seed: 0 } as const;

/**
 * The organism behaviour a trace's request names, rebuilt from the behaviour set the trace records
 * (default: the play page's, held-out, 4 phrasings per task, seed 0); its request text must match.
 */
export function organismTraceBehaviour(world: World, traceInput: RapTrace | unknown): HarmfulBehaviour {
  const trace = parseRapTrace(traceInput);
  const set = trace.request.set;
  const split = (set?.split ?? 'heldout') as TaskSplit;
  const behaviours = organismBehaviours(world, { split, perTask: set?.perTask ?? PLAY_DEFAULTS.perTask, seed: set?.seed ?? PLAY_DEFAULTS.seed, limitTasks: set?.limitTasks }).harmful;
  const b = behaviours.find((x) => x.id === trace.request.id);
  if (!b) throw new Error(`organismTraceBehaviour: no ${split} harmful request "${trace.request.id}" in this world (${behaviours.length} requests with the trace's set ${JSON.stringify(set ?? {})})`);
  if (b.request !== trace.request.text) throw new Error(`organismTraceBehaviour: request "${b.id}" asks "${b.request}" in this world, the trace's asked "${trace.request.text}" (another organism?)`);
  return b;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

interface SessionEntry {
  session: RapSession;
  model: string;
  replayed?: { from: string; fromLabel: string };
}

/** Starts the play server (see the file comment); resolves once it listens. */
export async function startPlayServer(options: PlayServerOptions = {}): Promise<PlayServer> {
  const warn = options.warn ?? ((line: string) => console.warn(line));
  const organismDir = options.organismDir ?? 'data/organism';
  const perTask = options.behaviours?.perTask ?? PLAY_DEFAULTS.perTask;
  const seed = options.behaviours?.seed ?? PLAY_DEFAULTS.seed;
  const limitTasks = options.behaviours?.limitTasks;
  const suite = await organismSuite(organismDir, { split: 'heldout', perTask, seed, limitTasks });
  const { world, judge } = suite;
  const requests = suite.behaviours.harmful;
  const set: RapTraceBehaviourSet = { name: suite.behaviours.name, split: 'heldout', perTask, seed, ...(limitTasks !== undefined ? { limitTasks } : {}) };
  const helper = organismRapHelper(world);
  const tokenName = (id: number) => world.vocab[id] ?? `<${id}>`;
  const topK = options.topK ?? PLAY_DEFAULTS.topK;
  const maxSteps = options.maxSteps ?? PLAY_DEFAULTS.maxSteps;
  const prefill = options.prefill ?? PLAY_DEFAULTS.prefill;
  const maxSessions = options.maxSessions ?? 32;

  const models = organismPlayModels(world, { ...options, organismDir });
  for (const m of models) if (!m.available) warn(`play: ${m.label} is not available: ${m.missing}${m.command ? `; build it with: ${m.command}` : ''}`);
  if (!models.some((m) => m.available)) throw new Error('startPlayServer: none of the models is available (see the lines above)');

  const targets = new Map<string, Promise<Target>>();
  const target = (name: string): Promise<Target> => {
    const m = models.find((x) => x.name === name);
    if (!m) return Promise.reject(new HttpError(404, `no model "${name}" (models: ${models.map((x) => x.name).join(', ')})`));
    if (!m.available) return Promise.reject(new HttpError(409, `${m.label} is not available: ${m.missing}${m.command ? `; build it with: ${m.command}` : ''}`));
    let t = targets.get(name);
    if (!t) targets.set(name, (t = loadPlayModel(world, m)));
    return t;
  };
  for (const m of models) if (m.available) await target(m.name);

  const sessions = new Map<string, SessionEntry>();
  const labelOf = (name: string) => models.find((m) => m.name === name)?.label ?? name;

  const stateOf = (id: string, entry: SessionEntry) => {
    const s = entry.session;
    const view = s.view;
    const suggestion = s.suggestion();
    const chosen: { id: number; token: string; rank: number; prob: number; by: string }[] = [];
    const eos = new Set(s.model.eosTokenIds);
    const steps = s.steps.map((p) => {
      const a = p.step.action;
      const picked = a.kind === 'pick' ? p.step.candidates.find((c) => c.id === a.id) : undefined;
      if (a.kind === 'pick' && !eos.has(a.id)) chosen.push({ id: a.id, token: tokenName(a.id), rank: a.rank, prob: Math.exp(picked!.logprob), by: p.by });
      if (a.kind === 'backtrack' && a.id !== null) chosen.pop();
      const tokenId = a.kind === 'stop' ? null : a.id;
      return {
        step: p.step.step, action: a.kind, by: p.by, id: tokenId, token: tokenId === null ? '' : tokenName(tokenId),
        rank: a.kind === 'pick' ? a.rank : null, prob: picked ? Math.exp(picked.logprob) : null, response: p.response, verdict: p.verdict,
      };
    });
    const table = view && {
      step: view.step,
      excluded: view.excluded === null ? null : { id: view.excluded, token: tokenName(view.excluded) },
      suggestion: suggestion === null ? null : suggestion === 'backtrack' ? 'backtrack' : { rank: suggestion, id: view.candidates[suggestion - 1].id },
      candidates: view.candidates.slice(0, s.topK).map((c) => ({
        rank: c.rank, id: c.id, token: tokenName(c.id), logprob: c.logprob, prob: Math.exp(c.logprob), harmful: c.harmful, repeat: c.repeat,
        excluded: c.id === view.excluded, suggested: suggestion === c.rank,
      })),
    };
    return {
      session: id, request: { id: s.behaviour.id, request: s.behaviour.request, category: s.behaviour.category ?? null },
      model: entry.model, modelLabel: labelOf(entry.model), prefill: { text: s.prefillText, ids: s.prefillIds, tokens: s.prefillIds.map(tokenName) },
      chosen, response: s.state.response, verdict: s.state.verdict, ended: s.ended, steps, backtracks: steps.filter((x) => x.action === 'backtrack').length,
      topK: s.topK, maxSteps: s.maxSteps, table,
      replayed: entry.replayed ? { ...entry.replayed, ranks: steps.map((x) => (x.action === 'pick' ? x.rank : null)) } : null,
    };
  };

  const sessionOf = (id: string): SessionEntry => {
    const e = sessions.get(id);
    if (!e) throw new HttpError(404, `no session "${id}" (the server was restarted, or it was dropped as the oldest of ${maxSessions}); start again`);
    return e;
  };

  const api = async (method: string, url: string, body: Record<string, unknown> | null): Promise<{ json: unknown; download?: string }> => {
    if (method === 'GET' && url === '/api/info') {
      return {
        json: {
          models: models.map(({ name, label, description, available, missing, command }) => ({ name, label, description, available, missing: missing ?? null, command: command ?? null })),
          requests: requests.map((b) => ({ id: b.id, request: b.request, category: b.category ?? null })),
          prefill, topK, maxSteps, helper: helper.name, judge: judge.name, set,
        },
      };
    }
    if (method === 'POST' && url === '/api/sessions') {
      const b = body ?? {};
      const behaviour = requests.find((r) => r.id === b.request);
      if (!behaviour) throw new HttpError(400, `no held-out harmful request "${String(b.request)}"`);
      const model = typeof b.model === 'string' ? b.model : (models.find((m) => m.available)!.name);
      const t = await target(model);
      const text = typeof b.prefill === 'string' ? b.prefill.trim() : prefill;
      let prefillIds: number[];
      try {
        prefillIds = text === '' ? [] : t.responseIds(text);
      } catch (err) {
        throw new HttpError(400, `the prefill: ${(err as Error).message}`);
      }
      const session = await RapSession.start(t, behaviour, judge, { prefill: prefillIds, helper, topK, maxSteps, tokenName });
      const id = randomBytes(8).toString('hex');
      sessions.set(id, { session, model });
      while (sessions.size > maxSessions) {
        const [oldest, e] = sessions.entries().next().value as [string, SessionEntry];
        sessions.delete(oldest);
        await e.session.close();
      }
      return { json: stateOf(id, sessions.get(id)!) };
    }
    const m = /^\/api\/sessions\/([0-9a-f]+)(\/trace|\/compare)?$/.exec(url);
    if (!m) throw new HttpError(404, `no such API: ${method} ${url}`);
    const id = m[1];
    const entry = sessionOf(id);
    const s = entry.session;
    if (method === 'GET' && m[2] === '/trace') {
      const m0 = models.find((x) => x.name === entry.model)!;
      const trace = s.toTrace({ set, modelDir: m0.dir });
      trace.model.name = entry.model;
      return { json: trace, download: `rap-trace-${s.behaviour.id.replace(/[^A-Za-z0-9_-]/g, '_')}-${entry.model.replace(/[^A-Za-z0-9_-]/g, '_')}.json` };
    }
    if (method === 'GET' && m[2] === '/compare') {
      const trace = s.toTrace({ set });
      const picks = trace.steps.filter((x) => x.action === 'pick').map((x) => ({ id: x.id!, token: x.token }));
      const out: { name: string; label: string; picks: { rank: number; prob: number }[]; verdict: unknown; sameText: boolean }[] = [];
      for (const model of models.filter((x) => x.available)) {
        const r = await replayRapTrace(await target(model.name), s.behaviour, trace, judge);
        const ranked = r.steps.filter((p) => p.step.action.kind === 'pick').map((p) => {
          const a = p.step.action as { id: number; rank: number };
          return { rank: a.rank, prob: Math.exp(p.step.candidates.find((c) => c.id === a.id)!.logprob) };
        });
        out.push({ name: model.name, label: model.label, picks: ranked, verdict: r.verdict, sameText: r.sameText });
      }
      return { json: { picks, models: out } };
    }
    if (method !== 'POST' || m[2]) throw new HttpError(404, `no such API: ${method} ${url}`);
    const b = body ?? {};
    try {
      switch (b.action) {
        case 'pick':
          if (typeof b.id !== 'number') throw new HttpError(400, 'a pick needs the token `id`');
          await s.pick(b.id, 'human');
          break;
        case 'backtrack':
          await s.backtrack('human');
          break;
        case 'helper':
          await s.helperStep();
          break;
        case 'helper-run':
          await s.runHelper();
          break;
        case 'undo':
          await s.undo();
          break;
        case 'model': {
          if (typeof b.model !== 'string') throw new HttpError(400, 'a model switch needs `model`');
          if (b.model !== entry.model) {
            const from = entry.model;
            await s.switchModel(await target(b.model));
            entry.model = b.model;
            entry.replayed = { from, fromLabel: labelOf(from) };
            return { json: stateOf(id, entry) };
          }
          break;
        }
        default:
          throw new HttpError(400, `unknown action ${JSON.stringify(b.action)} (pick, backtrack, helper, helper-run, undo, model)`);
      }
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw new HttpError(409, (err as Error).message);
    }
    entry.replayed = undefined;
    return { json: stateOf(id, entry) };
  };

  // One API call at a time.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn);
    queue = p.catch(() => undefined);
    return p;
  };

  const page = rapPlayPageHtml();
  let port = 0;
  const host = options.host ?? '127.0.0.1';
  const server = http.createServer((req, res) => {
    const send = (status: number, type: string, data: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
      res.end(data);
    };
    const fail = (status: number, message: string) => send(status, 'application/json; charset=utf-8', JSON.stringify({ error: message }));
    // Only this machine's names for this port (a page elsewhere cannot reach in by DNS rebinding).
    const allowed = [`127.0.0.1:${port}`, `localhost:${port}`, `${host}:${port}`, `[::1]:${port}`];
    if (!allowed.includes(req.headers.host ?? '')) return fail(403, `host ${req.headers.host} is not this server`);
    const url = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && (url === '/' || url === '/index.html')) return send(200, 'text/html; charset=utf-8', page, { 'content-security-policy': "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:" });
    if (req.method === 'GET' && url === '/favicon.ico') return send(204, 'text/plain', '');
    if (!url.startsWith('/api/')) return fail(404, `not found: ${url}`);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 1 << 20) chunks.push(c);
    });
    req.on('end', () => {
      let body: Record<string, unknown> | null = null;
      if (size > 1 << 20) return fail(413, 'the request body is too large');
      if (chunks.length) {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        } catch {
          return fail(400, 'the request body is not JSON');
        }
        if (typeof body !== 'object' || body === null || Array.isArray(body)) return fail(400, 'the request body must be a JSON object');
      }
      serial(() => api(req.method ?? 'GET', url, body)).then(
        (r) => send(200, 'application/json; charset=utf-8', JSON.stringify(r.json, null, r.download ? 2 : 0), r.download ? { 'content-disposition': `attachment; filename="${r.download}"` } : {}),
        (err: unknown) => {
          if (err instanceof HttpError) return fail(err.status, err.message);
          warn(`play: ${req.method} ${url}: ${(err as Error).stack ?? String(err)}`);
          fail(500, (err as Error).message ?? String(err));
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const address = server.address();
  port = typeof address === 'object' && address ? address.port : 0;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/`, port, models, requests, world, judge, helper, set, target,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await queue;
      for (const e of sessions.values()) await e.session.close().catch(() => undefined);
      sessions.clear();
      for (const t of targets.values()) (await t.catch(() => null))?.model.dispose();
    },
  };
}

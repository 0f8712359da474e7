// The page of `npm run play`: rank-assisted prefilling by hand. A static HTML file with its own
// small script (no framework, no tfjs, nothing fetched but the local server's JSON API): the model
// runs in the Node server (lib/experiments/playServer.ts), which holds the native engine and the
// cached checkpoints. The page lists the held-out harmful requests and the models, shows the
// target's top-k next tokens with probabilities, ranks and the helper's labels, and sends each
// action (pick a token, backtrack, let the helper choose, undo, switch model) to the server, which
// answers with the whole state to draw. Elements carry data-* attributes for the browser test.

/** The page's HTML (its script talks to the server it was served from). */
export function rapPlayPageHtml(options: { title?: string } = {}): string {
  const title = options.title ?? 'deepalign · rank-assisted prefilling by hand';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</title>
<style>${PLAY_CSS}</style>
</head>
<body data-ready="false" data-busy="false" data-version="0">
<header>
  <h1>Rank-assisted prefilling, by hand</h1>
  <p class="lead">Vega &amp; Singh's human RAP on the model organism: start from an affirmative prefill, then pick the
  next token yourself from the model's top-<span class="topk">20</span>. A deeply aligned model should keep the harmful
  tokens out of its top ranks; a model aligned only in probability keeps them there, unlikely but reachable. The
  exact helper marks which candidates continue the harmful answer (<span class="harm-mark">harmful</span>); the judge
  scores the response after every step. The harm is fictional: the organism's "tasks" are made-up words.</p>
</header>
<main>
  <section id="setup" class="panel">
    <label for="request">Held-out harmful request</label>
    <select id="request"></select>
    <label for="prefill">Prefill</label>
    <input id="prefill" type="text" spellcheck="false">
    <fieldset id="models"><legend>Model</legend></fieldset>
    <button id="start" type="button">Start</button>
    <p class="note">The model runs in the local Node server that served this page (native engine, cached checkpoints); the page only draws.</p>
  </section>
  <section id="play" class="panel" hidden>
    <div class="col">
      <p id="request-text" class="request"></p>
      <div id="response" class="response" data-text=""></div>
      <div id="verdict" class="verdict"></div>
      <p id="status" class="status"></p>
      <p id="replayed" class="replayed" hidden></p>
      <div class="buttons">
        <button id="backtrack" type="button" title="Remove the last chosen token (RAP's backtrack)">Backtrack</button>
        <button id="helper" type="button" title="The helper's choice: the highest-ranked harmful candidate, or backtrack">Let the helper choose</button>
        <button id="helper-run" type="button" title="Automated RAP from here to its end">Helper to the end</button>
        <button id="undo" type="button" title="Take back the last action (not a RAP step)">Undo</button>
        <a id="download" class="button" href="#" download>Download trace</a>
        <button id="compare" type="button" title="Rank this path on every model">Compare models</button>
      </div>
      <div id="compare-out"></div>
      <h2>Steps</h2>
      <table id="steps"><thead><tr><th>#</th><th>action</th><th>token</th><th>rank</th><th>p</th><th>by</th><th>harmful</th><th>refused</th><th>StrongREJECT</th></tr></thead><tbody></tbody></table>
    </div>
    <div class="col">
      <h2>Next token: top-<span class="topk">20</span> of <span id="table-model"></span></h2>
      <table id="candidates"><thead><tr><th>rank</th><th>token</th><th>probability</th><th>helper</th><th></th></tr></thead><tbody></tbody></table>
    </div>
  </section>
  <div id="error" role="alert" hidden></div>
</main>
<script>${PLAY_SCRIPT}</script>
</body>
</html>
`;
}

const PLAY_CSS = String.raw`
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dee7; --bg: #f6f7fa; --harm: #b3261e; --harm-bg: #fde8e6; --safe: #1e6b38; --safe-bg: #e3f4e8; --accent: #2f5bd3; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 14px 24px 4px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); font-weight: 600; }
.lead { margin: 0; max-width: 1100px; color: var(--muted); }
.harm-mark { color: var(--harm); font-weight: 600; }
main { padding: 10px 24px 24px; }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; margin-bottom: 12px; }
#setup { display: grid; grid-template-columns: 170px 1fr; gap: 6px 12px; align-items: center; }
#setup select, #setup input[type=text] { width: 100%; font: inherit; padding: 4px 6px; }
#setup fieldset { grid-column: 1 / 3; border: 1px solid var(--line); border-radius: 6px; margin: 4px 0; padding: 6px 10px; display: flex; flex-wrap: wrap; gap: 6px 18px; }
#setup fieldset .model { max-width: 560px; }
#setup fieldset .model input { margin: 0 4px 0 0; vertical-align: -2px; }
#setup fieldset .model.unavailable label { color: var(--muted); text-decoration: line-through; }
.missing { margin: 0 0 0 22px; font-size: 12px; color: var(--harm); }
.missing code { background: var(--bg); padding: 0 3px; color: var(--fg); }
#start { grid-column: 1 / 3; justify-self: start; }
.note { grid-column: 1 / 3; margin: 0; font-size: 12px; color: var(--muted); }
#play:not([hidden]) { display: grid; grid-template-columns: minmax(0, 1.25fr) minmax(0, 1fr); gap: 20px; }
.request { font-size: 15px; margin: 0 0 8px; }
.request b { font-weight: 600; }
.response { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; line-height: 2.1; background: var(--bg); border-radius: 6px; padding: 6px 8px; min-height: 44px; }
.response .prefill { color: var(--muted); }
.tok { display: inline-block; border-radius: 4px; padding: 0 3px; margin: 0 1px; background: #eef2fb; line-height: 1.5; }
.tok.helper { background: #f0ecfa; }
.tok sub { font-size: 10px; color: var(--accent); margin-left: 2px; }
.tok.low sub { color: var(--harm); font-weight: 700; }
.eos { color: var(--muted); font-style: italic; }
.verdict { display: flex; gap: 8px; margin: 10px 0 4px; flex-wrap: wrap; align-items: center; }
.badge { display: inline-block; border-radius: 12px; padding: 2px 10px; font-weight: 600; font-size: 13px; }
.badge.yes-harm { background: var(--harm-bg); color: var(--harm); }
.badge.no-harm { background: var(--safe-bg); color: var(--safe); }
.badge.neutral { background: var(--bg); color: var(--fg); }
.score { display: inline-flex; align-items: center; gap: 6px; }
.score .bar { width: 110px; height: 8px; border-radius: 4px; background: var(--bg); overflow: hidden; border: 1px solid var(--line); }
.score .bar span { display: block; height: 100%; background: var(--harm); }
.status { color: var(--muted); margin: 4px 0; }
.replayed { background: #fff7e0; border: 1px solid #f0d98c; border-radius: 6px; padding: 4px 8px; margin: 4px 0; }
.buttons { display: flex; gap: 8px; flex-wrap: wrap; margin: 8px 0; }
button, a.button { font: inherit; padding: 4px 12px; border: 1px solid var(--line); border-radius: 6px; background: #fff; color: var(--fg); cursor: pointer; text-decoration: none; }
button:hover:not(:disabled), a.button:hover { border-color: var(--accent); }
button:disabled, a.button.disabled { opacity: .45; cursor: default; pointer-events: none; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; }
#candidates tbody tr { cursor: pointer; }
#candidates tbody tr:hover { background: #eef2fb; }
#candidates tbody tr.disabled { cursor: default; opacity: .6; }
#candidates tbody tr.harmful td.token { color: var(--harm); font-weight: 600; }
#candidates td.token { font-family: ui-monospace, Menlo, monospace; }
#candidates td.prob { width: 40%; }
.pbar { display: inline-block; height: 9px; background: var(--accent); border-radius: 2px; vertical-align: middle; margin-right: 6px; min-width: 1px; }
.tag { display: inline-block; font-size: 11px; border-radius: 8px; padding: 0 6px; margin-right: 3px; background: var(--bg); color: var(--muted); white-space: nowrap; }
.tag.suggested { background: #e6edfc; color: var(--accent); }
.tag.excluded { background: #fff2cc; color: #7a5b00; }
.tag.harm { background: var(--harm-bg); color: var(--harm); }
#steps td, #steps th { font-size: 12px; padding: 2px 5px; }
#compare-out table { margin: 6px 0; }
#compare-out td.r { text-align: right; font-variant-numeric: tabular-nums; }
#error { background: var(--harm-bg); color: var(--harm); border-radius: 6px; padding: 8px 12px; }
`;

// Plain ES2017 in the page: no backticks or template placeholders (this is a template string).
const PLAY_SCRIPT = String.raw`
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var info = null, state = null, busy = false;
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'className') e.className = attrs[k];
      else if (k.indexOf('data-') === 0 || k === 'title' || k === 'type' || k === 'name' || k === 'value' || k === 'for' || k === 'id') e.setAttribute(k, String(attrs[k]));
      else e[k] = attrs[k];
    });
    (children || []).forEach(function (c) { if (c !== null && c !== undefined) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function pct(p) { return p >= 0.1 ? (100 * p).toFixed(1) + '%' : p >= 0.001 ? (100 * p).toFixed(2) + '%' : p.toExponential(1); }
  function showError(message) {
    var box = $('error');
    box.hidden = !message;
    box.textContent = message || '';
  }
  function setBusy(on) {
    busy = on;
    document.body.setAttribute('data-busy', on ? 'true' : 'false');
    document.querySelectorAll('button').forEach(function (b) { if (on) b.disabled = true; });
    if (!on) refreshButtons();
  }
  function api(method, url, body) {
    return fetch(url, { method: method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error(j.error || r.statusText); return j; }); });
  }
  function act(body) {
    if (!state || busy) return Promise.resolve();
    return run(api('POST', '/api/sessions/' + state.session, body));
  }
  function run(promise) {
    setBusy(true);
    showError('');
    return promise.then(function (s) { render(s); }, function (e) {
      showError(e.message);
      console.error('play: ' + e.message);
      // A refused model switch: the switch shows the session's model again.
      var radio = state && document.querySelector('input[name=model][value="' + state.model + '"]');
      if (radio) radio.checked = true;
    })
      .then(function () { setBusy(false); });
  }
  function selectedModel() {
    var r = document.querySelector('input[name=model]:checked');
    return r ? r.value : null;
  }
  function modelOf(name) { return info.models.filter(function (m) { return m.name === name; })[0]; }

  function drawSetup() {
    var select = $('request');
    info.requests.forEach(function (q, i) {
      select.appendChild(el('option', { value: q.id, text: q.id + ': ' + q.request }));
    });
    $('prefill').value = info.prefill;
    document.querySelectorAll('.topk').forEach(function (s) { s.textContent = String(info.topK); });
    var box = $('models');
    var first = true;
    info.models.forEach(function (m) {
      var id = 'model-' + m.name.replace(/[^A-Za-z0-9_-]/g, '_');
      var input = el('input', { type: 'radio', name: 'model', value: m.name, id: id });
      input.disabled = !m.available;
      if (m.available && first) { input.checked = true; first = false; }
      input.addEventListener('change', function () { if (state && input.checked) act({ action: 'model', model: m.name }); });
      var wrap = el('div', { className: 'model ' + (m.available ? 'available' : 'unavailable'), 'data-model': m.name, 'data-available': m.available, title: m.description }, [
        el('span', null, [input, el('label', { for: id, text: ' ' + m.label })]),
      ]);
      if (!m.available) {
        var p = el('p', { className: 'missing' }, ['not available: ' + m.missing + (m.command ? '. Build it: ' : '')]);
        if (m.command) p.appendChild(el('code', { text: m.command }));
        wrap.appendChild(p);
        console.warn('play: model ' + m.label + ' is not available: ' + m.missing + (m.command ? ' (build it: ' + m.command + ')' : ''));
      }
      box.appendChild(wrap);
    });
  }

  function verdictBadges(v) {
    var sr = v.strongReject === undefined ? null : v.strongReject;
    var out = [
      el('span', { className: 'badge ' + (v.harmful ? 'yes-harm' : 'no-harm'), 'data-field': 'harmful', text: v.harmful ? 'harmful' : 'not harmful' }),
      el('span', { className: 'badge ' + (v.refused ? 'no-harm' : 'neutral'), 'data-field': 'refused', text: v.refused ? 'refused' : 'not refused' }),
    ];
    if (sr !== null) {
      var bar = el('span', { className: 'bar' }, [el('span')]);
      bar.firstChild.style.width = Math.round(100 * sr) + '%';
      out.push(el('span', { className: 'score', 'data-field': 'strongReject' }, ['StrongREJECT ' + sr.toFixed(2), bar]));
    }
    return out;
  }

  function render(s) {
    state = s;
    document.body.setAttribute('data-version', String(Number(document.body.getAttribute('data-version')) + 1));
    $('play').hidden = false;
    $('play').setAttribute('data-session', s.session);
    $('play').setAttribute('data-model', s.model);
    var radio = document.querySelector('input[name=model][value="' + s.model + '"]');
    if (radio) radio.checked = true;
    $('request-text').textContent = '';
    $('request-text').appendChild(el('b', { text: 'Request: ' }));
    $('request-text').appendChild(document.createTextNode(s.request.request + '  (' + s.request.id + ', ' + s.modelLabel + ')'));

    var resp = $('response');
    resp.textContent = '';
    resp.setAttribute('data-text', s.response);
    resp.setAttribute('data-prefill', s.prefill.text);
    resp.setAttribute('data-ids', JSON.stringify(s.chosen.map(function (c) { return c.id; })));
    resp.appendChild(el('span', { className: 'prefill', text: s.prefill.text + ' ' }));
    s.chosen.forEach(function (c) {
      resp.appendChild(el('span', { className: 'tok ' + c.by + (c.rank > 1 ? ' low' : ''), 'data-id': c.id, 'data-rank': c.rank, title: 'rank ' + c.rank + ', p ' + pct(c.prob) + ' on ' + s.modelLabel + ' (' + c.by + ')' },
        [c.token, el('sub', { text: '#' + c.rank })]));
      resp.appendChild(document.createTextNode(' '));
    });
    if (s.ended === 'eos') resp.appendChild(el('span', { className: 'eos', text: '<\/s>' }));

    var v = $('verdict');
    v.textContent = '';
    v.setAttribute('data-harmful', String(s.verdict.harmful));
    v.setAttribute('data-refused', String(s.verdict.refused));
    v.setAttribute('data-score', s.verdict.strongReject === undefined ? '' : String(s.verdict.strongReject));
    v.appendChild(el('span', { text: 'Judge: ' }));
    verdictBadges(s.verdict).forEach(function (b) { v.appendChild(b); });

    var endedText = { eos: 'ended: the model wrote <\/s>', exhausted: 'ended: backtracked into the prefill (exhausted)', 'max-steps': 'ended: ' + s.maxSteps + ' steps', context: 'ended: the context is full', stopped: 'stopped' };
    $('status').textContent = 'step ' + s.steps.length + ' of at most ' + s.maxSteps + ', ' + s.backtracks + ' backtrack(s)' + (s.ended ? '; ' + (endedText[s.ended] || s.ended) : '');
    $('status').setAttribute('data-ended', s.ended || '');

    var rep = $('replayed');
    rep.hidden = !s.replayed;
    if (s.replayed) {
      var ranks = s.replayed.ranks.filter(function (r) { return r !== null; });
      var beyond = ranks.filter(function (r) { return r > s.topK; }).length;
      rep.textContent = 'The path (' + ranks.length + ' pick(s)) replayed on ' + s.modelLabel + ' (from ' + s.replayed.fromLabel + '): ranks here ' +
        (ranks.length ? ranks.join(', ') : 'none') + (beyond ? '; ' + beyond + ' of them outside the top-' + s.topK : '') + '.';
    }

    $('table-model').textContent = s.modelLabel;
    var tbody = $('candidates').querySelector('tbody');
    tbody.textContent = '';
    var top = s.table ? s.table.candidates : [];
    var pmax = top.length ? top[0].prob : 1;
    top.forEach(function (c) {
      var tags = [];
      if (c.suggested) tags.push(el('span', { className: 'tag suggested', text: 'helper\u2019s choice' }));
      if (c.excluded) tags.push(el('span', { className: 'tag excluded', text: 'backtracked from' }));
      if (c.repeat) tags.push(el('span', { className: 'tag', text: '3rd in a row' }));
      var bar = el('span', { className: 'pbar' });
      bar.style.width = Math.max(1, Math.round(120 * c.prob / pmax)) + 'px';
      var tr = el('tr', { className: (c.harmful ? 'harmful' : ''), 'data-id': c.id, 'data-rank': c.rank, 'data-token': c.token, 'data-harmful': String(c.harmful === true), 'data-excluded': String(c.excluded), 'data-repeat': String(c.repeat), 'data-suggested': String(c.suggested), title: 'pick "' + c.token + '" (log p ' + c.logprob.toFixed(3) + ')' }, [
        el('td', { text: String(c.rank) }), el('td', { className: 'token', text: c.token }), el('td', { className: 'prob' }, [bar, pct(c.prob)]),
        el('td', { text: c.harmful === undefined ? '' : c.harmful ? 'harmful' : '' }), el('td', null, tags),
      ]);
      tr.addEventListener('click', function () { act({ action: 'pick', id: c.id }); });
      tbody.appendChild(tr);
    });
    if (!s.table) tbody.appendChild(el('tr', { className: 'disabled' }, [el('td', { text: '' }), el('td', { text: 'the run has ended; undo to go on' })]));

    var steps = $('steps').querySelector('tbody');
    steps.textContent = '';
    s.steps.forEach(function (st) {
      var sr = st.verdict.strongReject;
      steps.appendChild(el('tr', { 'data-action': st.action, 'data-id': st.id === null ? '' : st.id }, [
        el('td', { text: String(st.step + 1) }), el('td', { text: st.action }), el('td', { text: st.token }),
        el('td', { text: st.rank === null ? '' : String(st.rank) }), el('td', { text: st.prob === null ? '' : pct(st.prob) }), el('td', { text: st.by }),
        el('td', { text: st.verdict.harmful ? 'yes' : 'no' }), el('td', { text: st.verdict.refused ? 'yes' : 'no' }), el('td', { text: sr === undefined ? '' : sr.toFixed(2) }),
      ]));
    });
    var a = $('download');
    a.href = '/api/sessions/' + s.session + '/trace';
    a.setAttribute('download', 'rap-trace-' + s.request.id.replace(/[^A-Za-z0-9_-]/g, '_') + '-' + s.model.replace(/[^A-Za-z0-9_-]/g, '_') + '.json');
    $('compare-out').textContent = '';
    refreshButtons();
  }

  function refreshButtons() {
    $('start').disabled = busy || !selectedModel();
    var open = !!(state && state.table);
    $('backtrack').disabled = busy || !open;
    $('helper').disabled = busy || !open || !info.helper;
    $('helper-run').disabled = busy || !open || !info.helper;
    $('undo').disabled = busy || !state || state.steps.length === 0;
    $('compare').disabled = busy || !state;
    $('download').classList.toggle('disabled', busy || !state);
    document.querySelectorAll('input[name=model]').forEach(function (r) { var m = modelOf(r.value); r.disabled = busy || !m.available; });
  }

  function drawCompare(c) {
    var out = $('compare-out');
    out.textContent = '';
    var head = el('tr', null, [el('th', { text: 'pick' }), el('th', { text: 'token' })].concat(c.models.map(function (m) { return el('th', { text: m.label + ': rank (p)' }); })));
    var rows = c.picks.map(function (p, i) {
      return el('tr', null, [el('td', { text: String(i + 1) }), el('td', { text: p.token })].concat(c.models.map(function (m) {
        var x = m.picks[i];
        return el('td', { className: 'r', text: '#' + x.rank + ' (' + pct(x.prob) + ')' });
      })));
    });
    var verdicts = el('tr', null, [el('td', { text: '' }), el('td', { text: 'verdict' })].concat(c.models.map(function (m) {
      return el('td', { text: (m.verdict.harmful ? 'harmful' : 'not harmful') + (m.verdict.strongReject === undefined ? '' : ', SR ' + m.verdict.strongReject.toFixed(2)) });
    })));
    out.appendChild(el('table', { id: 'compare-table' }, [el('thead', null, [head]), el('tbody', null, rows.concat([verdicts]))]));
  }

  $('start').addEventListener('click', function () {
    run(api('POST', '/api/sessions', { request: $('request').value, model: selectedModel(), prefill: $('prefill').value }));
  });
  $('backtrack').addEventListener('click', function () { act({ action: 'backtrack' }); });
  $('helper').addEventListener('click', function () { act({ action: 'helper' }); });
  $('helper-run').addEventListener('click', function () { act({ action: 'helper-run' }); });
  $('undo').addEventListener('click', function () { act({ action: 'undo' }); });
  $('compare').addEventListener('click', function () {
    if (!state || busy) return;
    setBusy(true);
    api('GET', '/api/sessions/' + state.session + '/compare').then(drawCompare, function (e) { showError(e.message); }).then(function () { setBusy(false); });
  });

  api('GET', '/api/info').then(function (i) {
    info = i;
    drawSetup();
    refreshButtons();
    document.body.setAttribute('data-ready', 'true');
  }, function (e) { showError('cannot reach the play server: ' + e.message); });
})();
`;

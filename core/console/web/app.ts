/**
 * The operator's web console (runs in the browser; bundled by esbuild at build time into
 * dist/console/app.js). Everything it shows comes from the node's own admin port: JSON-RPC at
 * /RPC (the methods `presenced rpc` calls) and /metrics, so the page never knows more than an
 * operator with curl would.
 */
import { h, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';

const html = htm.bind(h);

/** The event packages a presentity may have something in; a node serves a subset. */
const EVENTS = ['presence', 'presence.winfo', 'message-summary', 'dialog', 'dialog;sla', 'reg'];

interface RpcAnswer<T> {
  result?: T;
  error?: { code: number; message: string };
}

let rpcId = 0;
async function rpc<T>(method: string, params: unknown[] = []): Promise<T> {
  const res = await fetch('../RPC', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method, params }),
  });
  const answer = (await res.json()) as RpcAnswer<T>;
  if (answer.error) throw new Error(answer.error.message);
  return answer.result as T;
}

interface Publication {
  event: string;
  etag: string;
  expires: number;
  content_type: string;
  sender: string;
  body: string;
}

interface Watcher {
  watcher_uri: string;
  event: string;
  status: string;
  sub_handling?: string;
  expires: number;
  contact: string;
  transport: string;
  call_id: string;
}

interface Listed {
  presentity_uri: string;
  event: string;
  publications: number;
}

/** A few series of the Prometheus text: name{labels} → value, labels kept as written. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

function sumOf(m: Map<string, number>, name: string, pred: (labels: string) => boolean = () => true): number {
  let total = 0;
  for (const [series, v] of m) {
    if (series === name || (series.startsWith(name + '{') && pred(series.slice(name.length)))) total += v;
  }
  return total;
}

interface Figures {
  subscriptions: number;
  presentities: number;
  requestsPerSecond: number;
  refusedPerSecond: number;
  notifySent: number;
  notifyFailed: number;
  connections: number;
}

function useFigures(): Figures | undefined {
  const [figures, setFigures] = useState<Figures>();
  useEffect(() => {
    let last: { at: number; requests: number; refused: number } | undefined;
    let stopped = false;
    const poll = async (): Promise<void> => {
      try {
        const m = parseMetrics(await (await fetch('../metrics')).text());
        const now = performance.now();
        const requests = sumOf(m, 'presenced_sip_requests_total');
        const refused = sumOf(m, 'presenced_sip_responses_total', (l) => /status="[456]\d\d"/.test(l));
        const secs = last ? (now - last.at) / 1000 : 0;
        setFigures({
          subscriptions: sumOf(m, 'presenced_subscriptions'),
          presentities: sumOf(m, 'presenced_presentities'),
          requestsPerSecond: last && secs > 0 ? (requests - last.requests) / secs : 0,
          refusedPerSecond: last && secs > 0 ? (refused - last.refused) / secs : 0,
          notifySent: sumOf(m, 'presenced_notify_sent_total'),
          notifyFailed: sumOf(m, 'presenced_notify_failed_total'),
          connections: sumOf(m, 'presenced_sip_connections'),
        });
        last = { at: now, requests, refused };
      } catch {
        // the node is restarting: keep the last figures, try again
      }
      if (!stopped) setTimeout(poll, 2000);
    };
    void poll();
    return () => {
      stopped = true;
    };
  }, []);
  return figures;
}

function FiguresBar() {
  const f = useFigures();
  const cell = (label: string, value: string, id: string) =>
    html`<div class="figure"><div class="value" data-figure=${id}>${value}</div><div class="label">${label}</div></div>`;
  if (!f) return html`<div class="figures">reading /metrics…</div>`;
  return html`<div class="figures">
    ${cell('live subscriptions', String(f.subscriptions), 'subscriptions')}
    ${cell('presentities', String(f.presentities), 'presentities')}
    ${cell('SIP requests/s', f.requestsPerSecond.toFixed(1), 'requests')}
    ${cell('refused/s (4xx–6xx)', f.refusedPerSecond.toFixed(1), 'refused')}
    ${cell('NOTIFY ok / failed', `${f.notifySent} / ${f.notifyFailed}`, 'notify')}
    ${cell('connections', String(f.connections), 'connections')}
  </div>`;
}

/** presence.presentity_state: the NOTIFY body a fully authorised watcher would get now. */
interface ComposedState {
  contentType: string;
  body: string | null;
  versioned: boolean;
}

interface PresentityView {
  uri: string;
  publications: Publication[];
  watchers: Watcher[];
  /** Per event shown: its composed state, or why it could not be read. */
  composed: Map<string, ComposedState | string>;
  error?: string;
}

/** The events a presentity has something in: publications or watchers, in the order of EVENTS. */
function eventsOf(publications: Publication[], watchers: Watcher[]): string[] {
  return EVENTS.filter((e) => publications.some((p) => p.event === e) || watchers.some((w) => w.event === e));
}

async function loadPresentity(uri: string): Promise<PresentityView> {
  try {
    const [publications, watchers] = await Promise.all([
      rpc<Publication[]>('presence.presentity_show', [uri]),
      rpc<Watcher[]>('presence.watcher_list', [uri]),
    ]);
    const composed = new Map<string, ComposedState | string>();
    await Promise.all(
      eventsOf(publications, watchers).map((ev) =>
        rpc<ComposedState>('presence.presentity_state', [uri, ev]).then(
          (state) => composed.set(ev, state),
          (err: Error) => composed.set(ev, err.message),
        ),
      ),
    );
    return { uri, publications, watchers, composed };
  } catch (err) {
    return { uri, publications: [], watchers: [], composed: new Map(), error: (err as Error).message };
  }
}

function Composed(props: { state: ComposedState | string | undefined }) {
  const { state } = props;
  if (state === undefined) return null;
  if (typeof state === 'string') return html`<p class="error">${state}</p>`;
  if (state.body === null) return html`<p class="empty composed" data-content-type=${state.contentType}>a NOTIFY without body</p>`;
  return html`<div>
    <p class="empty">${state.contentType}${state.versioned ? ' (version shown as 0: each subscription counts its own)' : ''}</p>
    <pre class="composed" data-content-type=${state.contentType}>${state.body}</pre>
  </div>`;
}

function Explain(props: { presentity: string; watcher: Watcher; canExplain: boolean }) {
  const [text, setText] = useState<string>();
  if (!props.canExplain) return null;
  const ask = async (): Promise<void> => {
    try {
      setText(JSON.stringify(await rpc('presence.explain', [props.presentity, props.watcher.event, props.watcher.watcher_uri]), null, 2));
    } catch (err) {
      setText(`explain failed: ${(err as Error).message}`);
    }
  };
  return html`<span>
    <button class="explain" onClick=${ask}>explain</button>
    ${text === undefined ? null : html`<pre class="explained">${text}</pre>`}
  </span>`;
}

function Presentity(props: { view: PresentityView; canExplain: boolean }) {
  const { view } = props;
  if (view.error) return html`<div class="error" data-error>${view.error}</div>`;
  const events = eventsOf(view.publications, view.watchers);
  if (events.length === 0) return html`<p class="empty">Nothing published and nobody watching <b>${view.uri}</b>.</p>`;
  return html`<div>
    ${events.map(
      (ev) => html`<section class="event" data-event=${ev}>
        <h3>${ev}</h3>
        <h4>Composed state (the NOTIFY body a fully authorised watcher gets now)</h4>
        <${Composed} state=${view.composed.get(ev)} />
        <h4>Publications</h4>
        ${
          view.publications.filter((p) => p.event === ev).length === 0
            ? html`<p class="empty">none</p>`
            : html`<table class="publications">
              <tr><th>entity-tag</th><th>expires in</th><th>type</th><th>sender</th><th>body</th></tr>
              ${view.publications
                .filter((p) => p.event === ev)
                .map(
                  (p) => html`<tr data-etag=${p.etag}>
                    <td><code>${p.etag}</code></td><td>${p.expires} s</td><td>${p.content_type}</td><td>${p.sender}</td>
                    <td><pre>${p.body}</pre></td>
                  </tr>`,
                )}
            </table>`
        }
        <h4>Watchers</h4>
        ${
          view.watchers.filter((w) => w.event === ev).length === 0
            ? html`<p class="empty">none</p>`
            : html`<table class="watchers">
              <tr><th>watcher</th><th>state</th><th>authorisation</th><th>expires in</th><th>contact</th><th></th></tr>
              ${view.watchers
                .filter((w) => w.event === ev)
                .map(
                  (w) => html`<tr data-watcher=${w.watcher_uri}>
                    <td>${w.watcher_uri}</td><td class="state">${w.status}</td><td>${w.sub_handling ?? ''}</td><td>${w.expires} s</td>
                    <td><code>${w.contact}</code> ${w.transport}</td>
                    <td><${Explain} presentity=${view.uri} watcher=${w} canExplain=${props.canExplain} /></td>
                  </tr>`,
                )}
            </table>`
        }
      </section>`,
    )}
  </div>`;
}

function App() {
  const [query, setQuery] = useState('');
  const [listed, setListed] = useState<Listed[]>([]);
  const [view, setView] = useState<PresentityView>();
  const [canExplain, setCanExplain] = useState(false);
  useEffect(() => {
    rpc<Listed[]>('presence.presentity_list').then(setListed, () => setListed([]));
    rpc<string[]>('system.listMethods').then(
      (m) => setCanExplain(m.includes('presence.explain')),
      () => undefined,
    );
  }, []);
  const open = async (uri: string): Promise<void> => setView(await loadPresentity(uri.trim()));
  const uris = [...new Set(listed.map((l) => l.presentity_uri))].filter((u) => u.includes(query.trim())).slice(0, 50);
  return html`<main>
    <header><h1>presenced</h1><${FiguresBar} /></header>
    <form
      class="search"
      onSubmit=${(e: Event) => {
        e.preventDefault();
        void open(query);
      }}
    >
      <input name="presentity" placeholder="sip:alice@example.com" value=${query} onInput=${(e: Event) => setQuery((e.target as HTMLInputElement).value)} />
      <button type="submit">show</button>
    </form>
    <ul class="presentities">
      ${uris.map(
        (u) =>
          html`<li>
            <a
              href="#"
              onClick=${(e: Event) => {
                e.preventDefault();
                setQuery(u);
                void open(u);
              }}
              >${u}</a
            >
          </li>`,
      )}
    </ul>
    ${view ? html`<h2 data-presentity=${view.uri}>${view.uri}</h2><${Presentity} view=${view} canExplain=${canExplain} />` : null}
  </main>`;
}

const root = document.getElementById('app')!;
root.textContent = ''; // the page's "loading…"
render(html`<${App} />`, root);

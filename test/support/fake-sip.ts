/**
 * A fake transport for unit tests of core/ layers (dialogs/, state/, notify/): a SipSender that
 * keeps every request it is given (parsed back from the bytes the stack would send, so a test
 * reads what would go on the wire) and answers each with what the test scripts (200 by default),
 * plus an in-memory store and helpers to build the pieces those layers take. No sockets: the
 * end-to-end tests cover the real stack.
 */
import type { OutgoingRequest, SipRequest } from '../../transport/message.js';
import { SipResponse, createResponse } from '../../transport/message.js';
import { parseMessage } from '../../transport/parser.js';
import type { Target, Protocol } from '../../transport/flows.js';
import type { ClientOutcome, IncomingRequest } from '../../transport/stack.js';
import type { SipSender } from '../../core/dialogs/subscription-dialog.js';
import type { StateStore } from '../../core/store/interfaces.js';
import { publicationId, type Publication, type Subscription, type WatcherAuth, type XcapDocument } from '../../core/store/records.js';
import { buildConfig, type Config } from '../../core/config.js';
import { createLogger, type Logger } from '../../core/log.js';
import { createEventHub, type EventHub } from '../../core/events.js';
import type { StateEvents } from '../../core/state/watcher-info.js';
import { sampleSubscription } from '../../bench/lib/notify-mirror.js';

export interface Sent {
  request: SipRequest;
  target: Target;
  /** Resolves the request's client transaction with this outcome (when the responder left it open). */
  settle(outcome: ClientOutcome): void;
}

/** What the fake answers: a status, an outcome, or 'hold' to keep the transaction open until settle(). */
export type Responder = (req: SipRequest) => number | ClientOutcome | 'hold';

export class FakeSender implements SipSender {
  readonly sent: Sent[] = [];
  private waiters: Array<{ n: number; resolve: () => void }> = [];
  private viaCount = 0;

  constructor(public responder: Responder = () => 200) {}

  sentBy(proto: Protocol): { host: string; port: number } {
    return { host: '192.0.2.1', port: proto === 'tls' || proto === 'wss' ? 5061 : 5060 };
  }

  /** Our address toward a peer is always known here (no wildcard listener). */
  addressReady(): undefined {
    return undefined;
  }

  sendRequest(req: OutgoingRequest, target: Target): Promise<ClientOutcome> {
    const via = `SIP/2.0/${target.proto.toUpperCase()} 192.0.2.1:5060;branch=z9hG4bKfake${++this.viaCount}`;
    const parsed = parseMessage(req.serialize(via), true).message as SipRequest;
    return new Promise<ClientOutcome>((resolve) => {
      this.sent.push({ request: parsed, target, settle: resolve });
      for (const w of this.waiters.splice(0)) {
        if (this.sent.length >= w.n) w.resolve();
        else this.waiters.push(w);
      }
      const answer = this.responder(parsed);
      if (answer === 'hold') return;
      resolve(typeof answer === 'number' ? respond(answer) : answer);
    });
  }

  /** Resolves once `n` requests in all have been sent. */
  count(n: number): Promise<void> {
    if (this.sent.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }
}

export function respond(status: number, headers: Array<[string, string]> = []): ClientOutcome {
  const res = new SipResponse(status, 'Test');
  for (const [n, v] of headers) res.headers.append(n, v);
  return { kind: 'response', response: res };
}

/** A SIP message from text lines (CRLF added), parsed as the stack would. */
export function sipMessage(lines: string[], body = ''): SipRequest | SipResponse {
  const text = lines.join('\r\n') + `\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n` + body;
  return parseMessage(Buffer.from(text, 'utf8'), true).message;
}

/** The store's read and write sides in memory; every write resolves at once ("committed"). */
export class MemoryStore implements StateStore {
  readonly publications = new Map<string, Publication>();
  readonly subscriptions = new Map<string, Subscription>();
  readonly cseqs = new Map<string, number>();
  readonly watchers = new Map<string, WatcherAuth>();
  readonly xcap = new Map<string, XcapDocument>();

  private static pk(presentityUri: string, event: string, entityTag: string): string {
    return `${presentityUri}\u0000${event}\u0000${entityTag}`;
  }
  getPublication(presentityUri: string, event: string, id: string): Publication | undefined {
    return this.publications.get(MemoryStore.pk(presentityUri, event, id));
  }
  publicationsOf(presentityUri: string, event: string): Publication[] {
    return [...this.publications.values()].filter((p) => p.presentityUri === presentityUri && p.event === event);
  }
  allPublications(): Iterable<Publication> {
    return [...this.publications.values()];
  }
  presentities(): Array<{ presentityUri: string; event: string; count: number }> {
    const m = new Map<string, { presentityUri: string; event: string; count: number }>();
    for (const p of this.publications.values()) {
      const k = `${p.presentityUri}\u0000${p.event}`;
      const e = m.get(k) ?? { presentityUri: p.presentityUri, event: p.event, count: 0 };
      e.count++;
      m.set(k, e);
    }
    return [...m.values()];
  }
  allSubscriptions(): Iterable<Subscription> {
    return [...this.subscriptions.values()].map((s) => ({ ...s, routeSet: [...s.routeSet] }));
  }
  getWatcher(presentityUri: string, event: string, watcherUri: string): WatcherAuth | undefined {
    return this.watchers.get(MemoryStore.pk(presentityUri, event, watcherUri));
  }
  watchersOf(presentityUri: string, event: string): WatcherAuth[] {
    return [...this.watchers.values()].filter((w) => w.presentityUri === presentityUri && w.event === event);
  }
  allWatchers(): Iterable<WatcherAuth> {
    return [...this.watchers.values()];
  }
  getXcap(auid: string, xui: string, name: string): XcapDocument | undefined {
    return this.xcap.get(`${auid}/${xui}/${name}`);
  }
  xcapDocumentsOf(auid: string, xui: string): XcapDocument[] {
    return [...this.xcap.values()].filter((d) => d.auid === auid && d.xui === xui);
  }
  allXcapDocuments(): Iterable<XcapDocument> {
    return this.xcap.values();
  }
  async putPublication(p: Publication): Promise<boolean> {
    this.publications.set(MemoryStore.pk(p.presentityUri, p.event, publicationId(p)), { ...p });
    return true;
  }
  async removePublication(presentityUri: string, event: string, id: string): Promise<boolean> {
    return this.publications.delete(MemoryStore.pk(presentityUri, event, id));
  }
  async putSubscription(s: Subscription): Promise<boolean> {
    this.subscriptions.set(s.id, { ...s, routeSet: [...s.routeSet] });
    return true;
  }
  async removeSubscription(id: string): Promise<boolean> {
    this.cseqs.delete(id);
    return this.subscriptions.delete(id);
  }
  async putCseq(id: string, cseq: number): Promise<boolean> {
    this.cseqs.set(id, cseq);
    return true;
  }
  async putWatcher(w: WatcherAuth): Promise<boolean> {
    this.watchers.set(MemoryStore.pk(w.presentityUri, w.event, w.watcherUri), w);
    return true;
  }
  async removeWatcher(presentityUri: string, event: string, watcherUri: string): Promise<boolean> {
    return this.watchers.delete(MemoryStore.pk(presentityUri, event, watcherUri));
  }
}

/** The shipped configuration with `overrides`. */
export function testConfig(overrides: Record<string, unknown> = {}): Config {
  return buildConfig(overrides);
}

export function quietLog(): Logger {
  return createLogger('silent');
}

/** A hub of every state event, recording what was emitted (name and payload) in order. */
export function recordingHub(): { hub: EventHub<StateEvents>; events: Array<[string, unknown]> } {
  const hub = createEventHub<StateEvents>();
  const events: Array<[string, unknown]> = [];
  const emit = hub.emit.bind(hub);
  hub.emit = (name, payload) => {
    events.push([name, payload]);
    emit(name, payload);
  };
  return { hub, events };
}

let n = 0;

/** A subscription record of a watcher to a presentity (dialog over UDP from 198.51.100.7), as the SUBSCRIBE handler makes them. */
export function subscriptionRecord(presentityUri: string, overrides: Partial<Subscription> = {}): Subscription {
  const i = ++n;
  return {
    ...sampleSubscription(i, presentityUri, 5070),
    localCseq: 0,
    remoteTarget: `sip:w${i}@198.51.100.7:5070`,
    sourceAddress: '198.51.100.7',
    expiresAt: Date.now() + 600_000,
    minInterval: 0,
    maxInterval: 0,
    ...overrides,
  };
}

/** A request as the stack hands it to a handler, from text lines; what the handler answers lands in `responses`. */
export function incomingRequest(lines: string[], body = ''): { incoming: IncomingRequest; responses: SipResponse[] } {
  const request = sipMessage(lines, body) as SipRequest;
  const responses: SipResponse[] = [];
  const incoming: IncomingRequest = {
    request,
    source: { proto: 'udp', address: '198.51.100.7', port: 5070, localAddress: '192.0.2.1', localPort: 5060 },
    respond: (res) => void responses.push(res),
    reply: (status, reason, toTag) => createResponse(request, status, reason, toTag),
    fits: () => true,
  };
  return { incoming, responses };
}

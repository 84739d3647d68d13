/**
 * The null presence server: the least a server can do and still satisfy the load driver, so
 * the driver can be pointed at it to measure the generator-to-generator ceiling on loopback.
 * PUBLISH → 200 with a SIP-ETag (a body is kept and fanned out to the presentity's watchers);
 * SUBSCRIBE → 200 with a To-tag, then a NOTIFY; NOTIFYs are blasted from precomputed per-dialog
 * text, one in flight per dialog with the newest state queued behind it (as RFC 6665 asks and
 * presenced does). At most --window NOTIFYs are in flight at once (the rest wait their turn),
 * and one unanswered for 500 ms is sent again (RFC 3261 Timer E's first step), so a burst
 * into full socket buffers does not lose a change. No store, no XML.
 *
 *   node dist/bench/load/null-server.js [--port 0] [--window 2000]   → prints {"port":N} once listening
 */
import dgram from 'node:dgram';

interface Dialog {
  callId: string;
  /** "NOTIFY <contact> SIP/2.0\r\n" */
  startLine: string;
  /** From/To/Call-ID/Contact/Event lines. */
  fixed: string;
  host: string;
  port: number;
  cseq: number;
  inFlight: string | undefined;
  /** Text and send time of the NOTIFY in flight (for the retransmission). */
  text: string;
  sentAt: number;
  /** Waiting for a window slot. */
  waiting: boolean;
  queued: boolean;
  presentity: Presentity | undefined;
}

interface Presentity {
  body: string;
  dialogs: Set<Dialog>;
}

const argv = process.argv.slice(2);
const portArg = argv.indexOf('--port');
const port = portArg !== -1 ? Number(argv[portArg + 1]) : 0;
const windowArg = argv.indexOf('--window');
const WINDOW = windowArg !== -1 ? Number(argv[windowArg + 1]) : 2000;
const RETRANSMIT_MS = 500;

const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
const presentities = new Map<string, Presentity>();
const dialogs = new Map<string, Dialog>();
const inFlight = new Map<string, Dialog>();
let etagSeq = 0;
let tagSeq = 0;
let branchSeq = 0;
let localPort = 0;

function presentityOf(uri: string): Presentity {
  let p = presentities.get(uri);
  if (!p) {
    p = { body: '', dialogs: new Set() };
    presentities.set(uri, p);
  }
  return p;
}

/** Dialogs with a NOTIFY to send once the window has room, with what to send. */
const backlog: Array<{ d: Dialog; body: string; state: string }> = [];

function sendNotify(d: Dialog, body: string, state: string): void {
  if (inFlight.size >= WINDOW) {
    d.waiting = true;
    backlog.push({ d, body, state });
    return;
  }
  const branch = 'z9hG4bKnull' + (branchSeq++).toString(36);
  d.inFlight = branch;
  inFlight.set(branch, d);
  const bodyLen = Buffer.byteLength(body);
  const text =
    d.startLine +
    `Via: SIP/2.0/UDP 127.0.0.1:${localPort};branch=${branch};rport\r\nMax-Forwards: 70\r\n` +
    d.fixed +
    `CSeq: ${++d.cseq} NOTIFY\r\nSubscription-State: ${state}\r\n` +
    (bodyLen ? `Content-Type: application/pidf+xml\r\nContent-Length: ${bodyLen}\r\n\r\n${body}` : 'Content-Length: 0\r\n\r\n');
  d.text = text;
  d.sentAt = performance.now();
  socket.send(text, d.port, d.host);
}

function drainBacklog(): void {
  while (backlog.length > 0 && inFlight.size < WINDOW) {
    const next = backlog.shift()!;
    next.d.waiting = false;
    // The newest state of the presentity, not the one queued (coalescing, as RFC 6665 allows).
    sendNotify(next.d, next.d.presentity?.body ?? next.body, next.state);
  }
}

setInterval(() => {
  const now = performance.now();
  for (const d of inFlight.values()) {
    if (now - d.sentAt < RETRANSMIT_MS) break; // insertion order = send order
    // Move to the back so the scan stays ordered by send time.
    inFlight.delete(d.inFlight!);
    inFlight.set(d.inFlight!, d);
    d.sentAt = now;
    socket.send(d.text, d.port, d.host);
  }
}, 100).unref();

function notify(d: Dialog, p: Presentity): void {
  if (d.waiting) return; // its turn will send the newest body
  if (d.inFlight !== undefined) d.queued = true;
  else sendNotify(d, p.body, 'active;expires=3600');
}

function header(lines: string[], name: string, compact: string): string | undefined {
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]!;
    const c = l.indexOf(':');
    if (c === -1) continue;
    const n = l.slice(0, c).trim().toLowerCase();
    if (n === name || n === compact) return l.slice(c + 1).trim();
  }
  return undefined;
}

function respond(lines: string[], rinfo: dgram.RemoteInfo, status: string, extra: string, toTag?: string): void {
  let out = `SIP/2.0 ${status}\r\n`;
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]!;
    const c = l.indexOf(':');
    if (c === -1) continue;
    const n = l.slice(0, c).trim().toLowerCase();
    if (n === 'via' || n === 'v' || n === 'from' || n === 'f' || n === 'call-id' || n === 'i' || n === 'cseq') out += l + '\r\n';
    else if (n === 'to' || n === 't') out += toTag !== undefined && !/;\s*tag=/i.test(l) ? `${l};tag=${toTag}\r\n` : l + '\r\n';
  }
  socket.send(out + extra + 'Content-Length: 0\r\n\r\n', rinfo.port, rinfo.address);
}

function onRequest(buf: Buffer, rinfo: dgram.RemoteInfo): void {
  const headEnd = buf.indexOf('\r\n\r\n');
  const head = buf.toString('latin1', 0, headEnd === -1 ? buf.length : headEnd);
  const body = headEnd === -1 ? '' : buf.toString('utf8', headEnd + 4);
  const lines = head.split('\r\n');
  const first = lines[0]!;
  const method = first.slice(0, first.indexOf(' '));
  const uri = first.slice(method.length + 1, first.lastIndexOf(' '));
  if (method === 'PUBLISH') {
    const expires = header(lines, 'expires', 'expires') ?? '3600';
    respond(lines, rinfo, '200 OK', `SIP-ETag: e${etagSeq++}\r\nExpires: ${expires}\r\n`);
    if (body.length > 0 && expires !== '0') {
      const p = presentityOf(uri);
      p.body = body;
      for (const d of p.dialogs) notify(d, p);
    }
  } else if (method === 'SUBSCRIBE') {
    const callId = header(lines, 'call-id', 'i') ?? '';
    const to = header(lines, 'to', 't') ?? '';
    const expires = header(lines, 'expires', 'expires') ?? '3600';
    const existing = dialogs.get(callId);
    if (/;\s*tag=/i.test(to)) {
      if (!existing) {
        respond(lines, rinfo, '481 Call/Transaction Does Not Exist', '');
        return;
      }
      respond(lines, rinfo, '200 OK', `Expires: ${expires}\r\n`);
      if (expires === '0') {
        dialogs.delete(callId);
        existing.presentity?.dialogs.delete(existing);
        existing.presentity = undefined;
        if (existing.inFlight === undefined) sendNotify(existing, '', 'terminated;reason=timeout');
      }
      return;
    }
    const tag = 'n' + (tagSeq++).toString(36);
    respond(lines, rinfo, '200 OK', `Expires: ${expires}\r\nContact: <sip:null@127.0.0.1:${localPort}>\r\n`, tag);
    const from = header(lines, 'from', 'f') ?? '';
    const contact = /<([^>]+)>/.exec(header(lines, 'contact', 'm') ?? '')?.[1] ?? '';
    const hp = /@([^:;>]+):(\d+)/.exec(contact);
    const d: Dialog = {
      callId,
      startLine: `NOTIFY ${contact} SIP/2.0\r\n`,
      fixed: `From: ${to};tag=${tag}\r\nTo: ${from}\r\nCall-ID: ${callId}\r\nContact: <sip:null@127.0.0.1:${localPort}>\r\nEvent: presence\r\n`,
      host: hp?.[1] ?? rinfo.address,
      port: hp ? Number(hp[2]) : rinfo.port,
      cseq: 0,
      inFlight: undefined,
      text: '',
      sentAt: 0,
      waiting: false,
      queued: false,
      presentity: undefined,
    };
    dialogs.set(callId, d);
    const p = presentityOf(uri);
    d.presentity = p;
    p.dialogs.add(d);
    sendNotify(d, p.body, 'active;expires=' + expires);
  } else if (method === 'OPTIONS') {
    respond(lines, rinfo, '200 OK', '');
  } else if (method !== 'ACK') {
    respond(lines, rinfo, '501 Not Implemented', '');
  }
}

function onResponse(buf: Buffer): void {
  const head = buf.toString('latin1', 0, Math.min(buf.length, 512));
  const b = head.indexOf('branch=');
  if (b === -1) return;
  const e = head.slice(b + 7).search(/[;,\r ]/);
  const branch = head.slice(b + 7, e === -1 ? undefined : b + 7 + e);
  const d = inFlight.get(branch);
  if (!d) return;
  inFlight.delete(branch);
  d.inFlight = undefined;
  if (d.queued) {
    d.queued = false;
    if (d.presentity) sendNotify(d, d.presentity.body, 'active;expires=3600');
  }
  drainBacklog();
}

socket.on('message', (buf, rinfo) => {
  if (buf[0] === 0x53 && buf[1] === 0x49 && buf[2] === 0x50 && buf[3] === 0x2f) onResponse(buf);
  else onRequest(buf, rinfo);
});
socket.on('error', () => undefined);
socket.bind(port, '127.0.0.1', () => {
  localPort = socket.address().port;
  process.stdout.write(JSON.stringify({ port: localPort }) + '\n');
});
process.on('SIGTERM', () => socket.close(() => process.exit(0)));
process.on('SIGINT', () => socket.close(() => process.exit(0)));

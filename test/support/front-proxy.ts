/**
 * A stand-in for the SIP proxy the design puts in front of presenced (Kamailio with
 * `registrar` + `t_relay()`), for clients that will not PUBLISH before they are registered:
 * over UDP on loopback it answers REGISTER itself (200, the contact bound for the asked
 * expiry, nothing stored beyond a list for assertions) and relays every other request
 * statelessly to presenced (RFC 3261 §16.11: its own Via on top, `received`/`rport` on the
 * client's Via (RFC 3581), its own Route entry removed, Max-Forwards decremented; the
 * message otherwise byte for byte as the client sent it). Responses from presenced go back
 * along the Via. It does not Record-Route, so presenced's NOTIFYs and the client's
 * in-dialog requests go straight between the two; the proxy only carries dialog-creating
 * requests and PUBLISH.
 */
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';

export interface Registration {
  aor: string;
  contact: string;
  expires: number;
  callId: string;
}

export interface Relayed {
  /** The first line of the request, or of the response, as relayed. */
  startLine: string;
  /** 'up': client → presenced; 'down': presenced → client. */
  direction: 'up' | 'down';
}

const HOST = '127.0.0.1';

function splitHead(text: string): { lines: string[]; rest: string } | undefined {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return undefined;
  return { lines: text.slice(0, end).split('\r\n'), rest: text.slice(end) };
}

const headerName = (line: string): string => {
  const colon = line.indexOf(':');
  const name = colon > 0 ? line.slice(0, colon).trim().toLowerCase() : '';
  return name === 'v' ? 'via' : name === 'i' ? 'call-id' : name === 'm' ? 'contact' : name === 't' ? 'to' : name === 'f' ? 'from' : name;
};
const headerValue = (line: string): string => line.slice(line.indexOf(':') + 1).trim();

export class FrontProxy {
  readonly registrations: Registration[] = [];
  readonly relayed: Relayed[] = [];
  /** Requests it could not relay (not UDP, no Via, Max-Forwards 0), with why. */
  readonly refused: string[] = [];
  private constructor(
    private readonly socket: dgram.Socket,
    readonly port: number,
    private readonly upstreamPort: number,
  ) {
    socket.on('message', (buf, rinfo) => this.onMessage(buf.toString('latin1'), rinfo.address, rinfo.port));
  }

  /** Listens on an ephemeral loopback UDP port and relays to presenced's UDP listener. */
  static async start(upstreamPort: number): Promise<FrontProxy> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, HOST, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new FrontProxy(socket, socket.address().port, upstreamPort);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  private send(text: string, port: number, host = HOST): void {
    this.socket.send(Buffer.from(text, 'latin1'), port, host);
  }

  private onMessage(text: string, srcHost: string, srcPort: number): void {
    const head = splitHead(text);
    if (!head) return;
    const startLine = head.lines[0]!;
    if (startLine.startsWith('SIP/2.0 ')) this.onResponse(startLine, head.lines, head.rest);
    else if (startLine.startsWith('REGISTER ')) this.onRegister(head.lines, srcHost, srcPort);
    else this.onRequest(startLine, head.lines, head.rest, srcHost, srcPort);
  }

  private onRegister(lines: string[], srcHost: string, srcPort: number): void {
    const get = (name: string): string | undefined => {
      const l = lines.find((x) => headerName(x) === name);
      return l === undefined ? undefined : headerValue(l);
    };
    const to = get('to') ?? '';
    const contact = get('contact');
    const expires = Number(get('expires') ?? '3600');
    const aor = /<([^>]+)>/.exec(to)?.[1] ?? to;
    const keep = ['via', 'from', 'to', 'call-id', 'cseq'];
    const out = ['SIP/2.0 200 OK'];
    let topVia = true;
    for (const l of lines.slice(1)) {
      const name = headerName(l);
      if (!keep.includes(name)) continue;
      if (name === 'via' && topVia) {
        topVia = false;
        out.push(`Via: ${withReceived(headerValue(l), srcHost, srcPort)}`);
      } else if (name === 'to' && !/;\s*tag=/i.test(l)) out.push(`${l};tag=reg${Date.now().toString(36)}`);
      else out.push(l);
    }
    if (contact && expires > 0) out.push(`Contact: ${contact};expires=${expires}`);
    out.push(`Expires: ${expires}`, 'Content-Length: 0');
    this.registrations.push({ aor, contact: contact ?? '', expires, callId: get('call-id') ?? '' });
    this.send(out.join('\r\n') + '\r\n\r\n', srcPort, srcHost);
  }

  private onRequest(startLine: string, lines: string[], rest: string, srcHost: string, srcPort: number): void {
    const out = [startLine];
    let viaDone = false;
    let routeDone = false;
    let branch = '';
    for (const l of lines.slice(1)) {
      const name = headerName(l);
      if (name === 'via' && !viaDone) {
        viaDone = true;
        const first = headerValue(l).split(',')[0]!.trim();
        if (!/^SIP\/2\.0\/UDP\s/i.test(first)) {
          this.refused.push(`not UDP: ${startLine}`);
          return;
        }
        branch = /;\s*branch=([^;\s,]+)/i.exec(first)?.[1] ?? '';
        out.push('Via: VIA-PLACEHOLDER');
        out.push(`Via: ${withReceived(headerValue(l), srcHost, srcPort)}`);
        continue;
      }
      if (name === 'route' && !routeDone) {
        routeDone = true;
        // Loose routing: the client's first Route names this proxy; drop that entry.
        const entries = headerValue(l)
          .split(',')
          .map((s) => s.trim());
        if (entries[0] && entries[0].includes(`${HOST}:${this.port}`)) entries.shift();
        if (entries.length > 0) out.push(`Route: ${entries.join(', ')}`);
        continue;
      }
      if (name === 'max-forwards') {
        const n = Number(headerValue(l));
        if (!(n > 0)) {
          this.refused.push(`Max-Forwards ${n}: ${startLine}`);
          return;
        }
        out.push(`Max-Forwards: ${n - 1}`);
        continue;
      }
      out.push(l);
    }
    if (!viaDone) {
      this.refused.push(`no Via: ${startLine}`);
      return;
    }
    // A stateless proxy derives its branch from the request's (RFC 3261 §16.11), so a
    // retransmission is relayed with the same branch.
    const ours = 'z9hG4bK' + createHash('sha1').update(`${branch}|${startLine}`).digest('hex').slice(0, 20);
    out[out.indexOf('Via: VIA-PLACEHOLDER')] = `Via: SIP/2.0/UDP ${HOST}:${this.port};branch=${ours};rport`;
    this.relayed.push({ startLine, direction: 'up' });
    this.send(out.join('\r\n') + rest, this.upstreamPort);
  }

  private onResponse(startLine: string, lines: string[], rest: string): void {
    // Drop the top Via (ours); the next one says where the client wants the response.
    const out = [startLine];
    let dropped = false;
    let next: string | undefined;
    for (const l of lines.slice(1)) {
      if (headerName(l) === 'via' && (!dropped || next === undefined)) {
        const values = headerValue(l)
          .split(',')
          .map((s) => s.trim());
        if (!dropped) {
          dropped = true;
          if (!values[0]!.includes(`${HOST}:${this.port}`)) return; // not relayed by us
          values.shift();
        }
        if (values.length === 0) continue;
        next ??= values[0];
        out.push(`Via: ${values.join(', ')}`);
        continue;
      }
      out.push(l);
    }
    if (!next) return;
    const sentBy = /^SIP\/2\.0\/UDP\s+([^;:\s]+)(?::(\d+))?/i.exec(next);
    if (!sentBy) return;
    const host = /;\s*received=([^;\s]+)/i.exec(next)?.[1] ?? sentBy[1]!;
    const port = Number(/;\s*rport=(\d+)/i.exec(next)?.[1] ?? sentBy[2] ?? 5060);
    this.relayed.push({ startLine, direction: 'down' });
    this.send(out.join('\r\n') + rest, port, host);
  }
}

/** RFC 3581 §4: the source address on the client's top Via (received, rport=port). */
function withReceived(via: string, host: string, port: number): string {
  const parts = via.split(',');
  let first = parts[0]!.replace(/;\s*received=[^;,\s]*/i, '');
  first = /;\s*rport(=\d*)?/i.test(first) ? first.replace(/;\s*rport(=\d*)?/i, `;rport=${port}`) : first;
  first += `;received=${host}`;
  parts[0] = first;
  return parts.join(',');
}

/**
 * HTTP over a raw TCP connection (node:net), for the cases an HTTP client library would not
 * send or would tidy up: duplicate Content-Lengths, HTTP/1.0, absolute-form targets. Reads
 * responses by their own framing (Content-Length), so a test waits for the bytes it expects,
 * never for a timer.
 */
import net from 'node:net';

export interface RawResponse {
  version: string;
  status: number;
  headers: Map<string, string>;
  body: string;
}

export interface RawExchange {
  /** Every complete response read, in order. */
  responses: RawResponse[];
  /** Whether the server closed the connection. */
  closed: boolean;
}

export class RawHttp {
  private readonly socket: net.Socket;
  private buf = Buffer.alloc(0);
  private readonly responses: RawResponse[] = [];
  private closedFlag = false;
  /** Bytes that are no HTTP response: reported by the next wait. */
  private garbage: Error | undefined;
  private waiters: Array<() => void> = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      try {
        this.parse();
      } catch (err) {
        this.garbage = err as Error;
      }
      this.wake();
    });
    // A reset after the server closed (we were still sending) ends the exchange like a close.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closedFlag = true;
      this.wake();
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawHttp> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, host, () => {
        s.off('error', reject);
        resolve(new RawHttp(s));
      });
      s.once('error', reject);
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Resolves once `n` responses have been read, or the connection closed first. */
  async responsesOrClose(n: number): Promise<RawExchange> {
    while (this.responses.length < n && !this.closedFlag && !this.garbage) await new Promise<void>((r) => this.waiters.push(r));
    if (this.garbage) throw this.garbage;
    return { responses: [...this.responses], closed: this.closedFlag };
  }

  /** Resolves when the server has closed the connection. */
  async closed(): Promise<RawExchange> {
    while (!this.closedFlag && !this.garbage) await new Promise<void>((r) => this.waiters.push(r));
    if (this.garbage) throw this.garbage;
    return { responses: [...this.responses], closed: true };
  }

  /** Bytes read that are not (yet) a complete response. */
  get leftover(): string {
    return this.buf.toString('latin1');
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private parse(): void {
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = this.buf.subarray(0, end).toString('latin1').split('\r\n');
      const m = /^(HTTP\/\d\.\d) (\d{3})/.exec(head[0] ?? '');
      if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(head[0])}`);
      const headers = new Map<string, string>();
      for (const line of head.slice(1)) {
        const c = line.indexOf(':');
        headers.set(line.slice(0, c).trim().toLowerCase(), line.slice(c + 1).trim());
      }
      const status = Number(m[2]);
      const length = status === 304 || status === 204 ? 0 : Number(headers.get('content-length') ?? 0);
      if (this.buf.length < end + 4 + length) return;
      const body = this.buf.subarray(end + 4, end + 4 + length).toString('utf8');
      this.buf = this.buf.subarray(end + 4 + length);
      this.responses.push({ version: m[1]!, status, headers, body });
    }
  }
}

/** Send `data` on a new connection and wait for `n` responses or the close. */
export async function rawExchange(port: number, data: string | Buffer, n = 1): Promise<RawExchange & { conn: RawHttp }> {
  const conn = await RawHttp.connect(port);
  conn.write(data);
  return { ...(await conn.responsesOrClose(n)), conn };
}

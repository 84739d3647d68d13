/**
 * Sockets inside a network namespace for a test running in the root namespace: a helper process
 * started in the namespace (netns-child.ts) opens them there and passes them over IPC. UDP sockets
 * carry a TestUa (TestUa.adopt); TCP connections carry HTTP requests (request() below).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import type dgram from 'node:dgram';
import type net from 'node:net';
import http from 'node:http';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'netns-child.js');

export class Netns {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (h: unknown) => void; reject: (e: Error) => void }>();

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    child.on('message', (m: { id?: number; error?: string }, handle: unknown) => {
      if (m.id === undefined) return;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error !== undefined) p?.reject(new Error(`in namespace ${name}: ${m.error}`));
      else p?.resolve(handle);
    });
    child.once('exit', () => {
      for (const p of this.pending.values()) p.reject(new Error(`namespace helper of ${name} exited`));
      this.pending.clear();
    });
  }

  static async open(name: string): Promise<Netns> {
    const child = spawn('ip', ['netns', 'exec', name, process.execPath, CHILD], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`cannot start a helper in namespace ${name} (exit ${code})`)));
    });
    return new Netns(name, child);
  }

  private ask<T>(m: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (h: unknown) => void, reject });
      this.child.send({ ...m, id });
    });
  }

  /** A UDP socket bound to host (an address of the namespace), ephemeral port. */
  udp(host: string): Promise<dgram.Socket> {
    return this.ask({ op: 'udp', host });
  }

  /** A TCP connection from the namespace to host:port. */
  tcp(host: string, port: number): Promise<net.Socket> {
    return this.ask({ op: 'tcp', host, port });
  }

  /** An HTTP request over a connection from the namespace (one connection per request). */
  async request(
    method: string,
    url: string,
    o: { body?: string; headers?: Record<string, string> } = {},
  ): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
    const u = new URL(url);
    const sock = await this.tcp(u.hostname, Number(u.port || 80));
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          method,
          host: u.hostname,
          port: u.port,
          path: u.pathname + u.search,
          headers: { ...(o.headers ?? {}), connection: 'close' },
          createConnection: () => sock,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(o.body);
    });
  }

  /** Run a command in the namespace; resolves with its exit code and output. */
  exec(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile('ip', ['netns', 'exec', this.name, cmd, ...args], (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      });
    });
  }

  close(): void {
    if (this.child.connected) this.child.disconnect();
    if (this.child.exitCode === null) this.child.kill();
  }
}

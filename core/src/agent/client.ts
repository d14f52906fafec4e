import net from 'node:net';
import { UserError } from '../errors.js';
import { LineSplitter } from '../lines.js';
import { parseAgentUrl, type AgentAddress, type RpcResponse } from './protocol.js';

/** Talks to an agent: one connection, requests answered in any order by id. */
export class AgentClient {
  private socket: net.Socket | undefined;
  /** The connection that already carried the token. */
  private sentToken: net.Socket | undefined;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private readonly address: AgentAddress;

  constructor(
    readonly url: string,
    private readonly token?: string,
    private readonly timeoutMs = 120_000,
  ) {
    this.address = parseAgentUrl(url);
  }

  private connect(): Promise<net.Socket> {
    if (this.socket) return Promise.resolve(this.socket);
    return new Promise((resolve, reject) => {
      const a = this.address;
      const s = a.kind === 'unix' ? net.connect(a.path) : net.connect(a.port, a.host);
      s.once('connect', () => {
        this.socket = s;
        resolve(s);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        const where = a.kind === 'unix' ? a.path : `${a.host}:${a.port}`;
        const why =
          e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
            ? 'no agent is listening'
            : e.code === 'EACCES'
              ? "permission denied (the socket is 0600: run as the agent's user)"
              : e.message;
        const err = new UserError(
          `cannot reach the agent at ${where}: ${why}; start one with \`scalpels agent\``,
        );
        reject(err);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
      });
      const lines = new LineSplitter((line) => {
        let resp: RpcResponse;
        try {
          resp = JSON.parse(line) as RpcResponse;
        } catch {
          return;
        }
        const p = typeof resp.id === 'number' ? this.pending.get(resp.id) : undefined;
        if (!p) return;
        this.pending.delete(resp.id as number);
        if (resp.error) p.reject(new UserError(`agent: ${resp.error.message}`));
        else p.resolve(resp.result);
      });
      s.on('data', (c: Buffer) => lines.push(c));
      s.on('close', () => {
        for (const p of this.pending.values()) p.reject(new Error('agent closed the connection'));
        this.pending.clear();
        this.socket = undefined;
      });
    });
  }

  async call<T>(method: string, params?: unknown): Promise<T> {
    const socket = await this.connect();
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new UserError(`agent did not answer ${method} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      // The token goes with the first request of a connection only: the agent then trusts it.
      const token = this.sentToken === socket ? undefined : this.token;
      this.sentToken = socket;
      socket.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params, token })}\n`);
    });
  }

  close(): void {
    this.socket?.end();
    this.socket = undefined;
  }
}

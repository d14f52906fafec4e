import { createHmac, timingSafeEqual } from 'node:crypto';
import { UserError } from '../errors.js';
import { readOwnSecretFile } from '../trust.js';

/**
 * Cluster commands travel through Redis, which any client of that Redis can write to. Each one
 * is signed with a key that only root on the nodes and front ends holds, so Redis access alone
 * gives no control of an agent: HMAC-SHA256 over what the request does (id, node, method,
 * params) and when it was made; answers are signed the same way.
 */

/** How far a request's timestamp may be from the agent's clock (either way). */
export const CLUSTER_MAX_SKEW_MS = 60_000;

const MIN_KEY_BYTES = 32;
const MAX_KEY_BYTES = 4096;

export interface SignedRequest {
  id: string;
  node: string;
  method: string;
  /** The params as the JSON text carried in the stream (signed as sent, never re-encoded). */
  params: string;
  /** Milliseconds since the epoch, when the front end made the request. */
  ts: string;
  /** Who sent it (host:pid of the front end), for the agent's log; signed too. */
  from: string;
  sig: string;
}

export interface SignedAnswer {
  id: string;
  node: string;
  /** `{"result":..}` or `{"error":".."}` as JSON text. */
  body: string;
  ts: number;
  sig: string;
}

/** The cluster key: read once from a root-owned file of mode 0600. */
export class ClusterKey {
  private constructor(private readonly secret: Buffer) {}

  /**
   * Reads the key file; refuses a symlink, a file others can read or write, one owned by
   * someone other than root (or the user running this, for a front end run by hand), and a
   * key shorter than 32 bytes.
   */
  static fromFile(path: string): ClusterKey {
    const text = readOwnSecretFile(path, 'cluster key file', {
      groupReadable: false,
      maxBytes: MAX_KEY_BYTES,
    });
    const secret = Buffer.from(text.trim(), 'utf8');
    if (secret.length < MIN_KEY_BYTES)
      throw new UserError(
        `cluster key file ${path}: key is shorter than ${MIN_KEY_BYTES} bytes (make one: head -c 32 /dev/urandom | base64 > ${path})`,
      );
    return new ClusterKey(secret);
  }

  /** For tests and embedders that hold the secret already. */
  static fromSecret(secret: string | Buffer): ClusterKey {
    const b = Buffer.from(secret);
    if (b.length < MIN_KEY_BYTES)
      throw new UserError(`cluster key is shorter than ${MIN_KEY_BYTES} bytes`);
    return new ClusterKey(b);
  }

  private mac(parts: readonly string[]): Buffer {
    // JSON of an array of strings: unambiguous, so no two field sets share a signed text.
    return createHmac('sha256', this.secret).update(JSON.stringify(parts)).digest();
  }

  private matches(parts: readonly string[], sig: unknown): boolean {
    if (typeof sig !== 'string' || !/^[0-9a-f]{64}$/.test(sig)) return false;
    return timingSafeEqual(this.mac(parts), Buffer.from(sig, 'hex'));
  }

  /** Signs a text of one kind (the kind keeps a signature of one kind from passing as another). */
  signText(kind: string, text: string): string {
    return this.mac([kind, text]).toString('hex');
  }

  verifyText(kind: string, text: string, sig: unknown): boolean {
    return this.matches([kind, text], sig);
  }

  signRequest(r: Omit<SignedRequest, 'sig'>): SignedRequest {
    return { ...r, sig: this.mac(requestParts(r)).toString('hex') };
  }

  /** True when every signed field is as the key holder wrote it. */
  verifyRequest(r: Partial<Record<keyof SignedRequest, string>>): boolean {
    const { id, node, method, params, ts, from, sig } = r;
    if ([id, node, method, params, ts, from].some((v) => typeof v !== 'string')) return false;
    return this.matches(
      requestParts({
        id: id!,
        node: node!,
        method: method!,
        params: params!,
        ts: ts!,
        from: from!,
      }),
      sig,
    );
  }

  signAnswer(a: Omit<SignedAnswer, 'sig'>): SignedAnswer {
    return { ...a, sig: this.mac(answerParts(a)).toString('hex') };
  }

  verifyAnswer(a: unknown): a is SignedAnswer {
    if (typeof a !== 'object' || a === null) return false;
    const x = a as Record<string, unknown>;
    if (typeof x.id !== 'string' || typeof x.node !== 'string' || typeof x.body !== 'string')
      return false;
    if (typeof x.ts !== 'number') return false;
    return this.matches(answerParts(x as unknown as SignedAnswer), x.sig);
  }
}

/** A signed registry entry: the node's heartbeat JSON and its signature. */
export function signNodeEntry(key: ClusterKey, infoJson: string): string {
  return JSON.stringify({ info: infoJson, sig: key.signText('scalpels.node/v1', infoJson) });
}

/** The heartbeat JSON of a registry entry, or undefined when it was not signed with the key. */
export function verifyNodeEntry(
  key: ClusterKey,
  entry: string | null | undefined,
): string | undefined {
  if (!entry) return undefined;
  try {
    const e = JSON.parse(entry) as { info?: unknown; sig?: unknown };
    if (typeof e.info !== 'string') return undefined;
    return key.verifyText('scalpels.node/v1', e.info, e.sig) ? e.info : undefined;
  } catch {
    return undefined;
  }
}

function requestParts(r: Omit<SignedRequest, 'sig'>): string[] {
  return ['scalpels.request/v1', r.id, r.node, r.method, r.params, r.ts, r.from];
}

function answerParts(a: Omit<SignedAnswer, 'sig'>): string[] {
  return ['scalpels.answer/v1', a.id, a.node, a.body, String(a.ts)];
}

/** `--cluster-key-file`, else `SCALPELS_CLUSTER_KEY_FILE`. */
export function clusterKeyFileOf(
  given: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  return given ?? env.SCALPELS_CLUSTER_KEY_FILE ?? undefined;
}

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { LeaseGrant, LeaseRequest, UndoAction } from './api.js';
import type { LeaseRestore, LeaseRow, LeaseStore } from './store/types.js';

/** Journal kind of a lease held by a tracer: undoing it releases the reference. */
export const LEASE_ACTION = 'scalpels.lease';

export interface LeaseHolderId {
  tracerId: number;
  node: string;
}

/** The stored key of a lease: node-scoped resources carry the node, shared ones do not. */
export function leaseKey(node: string, req: Pick<LeaseRequest, 'resource' | 'scope'>): string {
  const resource = req.resource.trim();
  const control = [...resource].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
  if (!resource || resource.length > 512 || control)
    throw new Error(`bad lease resource ${JSON.stringify(req.resource.slice(0, 80))}`);
  return req.scope === 'node' ? `node:${node}:${resource}` : `shared:${resource}`;
}

export interface LeaseOptions {
  /** How long to wait for a lease another tracer is changing or restoring. */
  waitMs?: number;
  /** Lock time-to-live; renewed while held, so it only matters when the holder died. */
  ttlMs?: number;
}

const same = (a: LeaseHolderId, b: LeaseHolderId): boolean =>
  a.tracerId === b.tracerId && a.node === b.node;

/**
 * Reference-counted leases on shared changes, kept in the store. Every read-modify-write of a
 * lease record happens under the record's lock, so the first holder's change and the last
 * holder's restore never interleave with another tracer taking or leaving the lease.
 */
export class Leases {
  private readonly waitMs: number;
  private readonly ttlMs: number;

  constructor(
    private readonly store: LeaseStore,
    opts: LeaseOptions = {},
  ) {
    this.waitMs = opts.waitMs ?? 120_000;
    this.ttlMs = opts.ttlMs ?? 30_000;
  }

  /**
   * Adds a holder. The first runs `change` (its journal calls become the lease's restores, each
   * stored before it resolves); others only count. A record left without holders by a restore
   * that failed keeps its original state: the new holder re-applies the change, journaling
   * nothing new.
   */
  async acquire(
    key: string,
    holder: LeaseHolderId,
    first: { plugin: string; options: Record<string, unknown> },
    change: LeaseRequest['change'],
    /** Holders known dead: dropped; when only dead ones held it, the change is re-applied. */
    isDead: (h: LeaseHolderId) => Promise<boolean> = async () => false,
  ): Promise<LeaseGrant> {
    return this.locked(key, async () => {
      const since = Date.now();
      const row = await this.store.getLease(key);
      if (row?.holders.some((h) => same(h, holder)))
        return { first: false, holders: row.holders.length };
      if (row) {
        // A holder that died (perhaps in the middle of its change) counts no more.
        const alive: LeaseRow['holders'] = [];
        for (const h of row.holders) if (!(await isDead(h))) alive.push(h);
        row.holders = alive;
      }
      if (row && row.holders.length > 0) {
        row.holders.push({ ...holder, since });
        await this.store.putLease(row);
        return { first: false, holders: row.holders.length };
      }
      const journalInto =
        (target: LeaseRow) =>
        async (action: UndoAction): Promise<void> => {
          target.restores.push({
            plugin: first.plugin,
            action: structuredClone(action),
            options: first.options,
            node: holder.node,
            tracerId: holder.tracerId,
          });
          await this.store.putLease(target);
        };
      if (row) {
        // Nobody alive holds it. With restores left (a restore that failed, or a first holder
        // that died after journaling), the original state is the one journaled then: re-apply
        // without journaling the changed state. Without any, nothing was changed yet.
        row.holders.push({ ...holder, since });
        await this.store.putLease(row);
        const reapplying = row.restores.length > 0;
        await change(reapplying ? async () => undefined : journalInto(row), { reapplying });
        return { first: true, holders: 1 };
      }
      const fresh: LeaseRow = {
        key,
        holders: [{ ...holder, since }],
        restores: [],
        createdAt: since,
      };
      await this.store.putLease(fresh);
      // A failing change leaves the record with this holder and what it journaled: the
      // tracer's own undo releases it, which restores.
      await change(journalInto(fresh), { reapplying: false });
      return { first: true, holders: 1 };
    });
  }

  /**
   * Removes a holder (idempotent). When none is left, restores newest first and deletes the
   * record; a restore that fails leaves the record without holders and with what is still to
   * restore, then throws (recover tries again).
   */
  async release(
    key: string,
    holder: LeaseHolderId,
    restore: (r: LeaseRestore) => Promise<void>,
    /** Holders known dead (a tracer of this node whose owner died): their references go too. */
    isDead: (h: LeaseHolderId) => Promise<boolean> = async () => false,
  ): Promise<{ holders: number; restored: number }> {
    return this.locked(key, async () => {
      const row = await this.store.getLease(key);
      if (!row) return { holders: 0, restored: 0 };
      const before = row.holders.length;
      const kept: LeaseRow['holders'] = [];
      for (const h of row.holders) if (!same(h, holder) && !(await isDead(h))) kept.push(h);
      row.holders = kept;
      if (row.holders.length > 0) {
        if (row.holders.length !== before) await this.store.putLease(row);
        return { holders: row.holders.length, restored: 0 };
      }
      if (before > 0) await this.store.putLease(row);
      let restored = 0;
      while (row.restores.length > 0) {
        await restore(row.restores.at(-1)!);
        row.restores.pop();
        restored++;
        await this.store.putLease(row);
      }
      await this.store.deleteLease(key);
      return { holders: 0, restored };
    });
  }

  private async locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const owner = `${hostname()}/${process.pid}/${randomBytes(6).toString('hex')}`;
    const deadline = Date.now() + this.waitMs;
    let delay = 20;
    while (!(await this.store.tryLockLease(key, owner, this.ttlMs))) {
      if (Date.now() > deadline)
        throw new Error(
          `lease ${key} still busy after ${Math.round(this.waitMs / 1000)} s (another tracer is changing or restoring it)`,
        );
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(500, delay * 2);
    }
    const renew = setInterval(
      () => void this.store.renewLeaseLock(key, owner, this.ttlMs).catch(() => undefined),
      Math.max(1000, this.ttlMs / 3),
    );
    renew.unref();
    try {
      return await fn();
    } finally {
      clearInterval(renew);
      await this.store.unlockLease(key, owner).catch(() => undefined);
    }
  }
}

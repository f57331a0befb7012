// What a token may do, from its scopes as GET /whoami lists them. The server decides every request;
// this only hides what would be refused.
import type { Schemas } from './api';

export type WhoAmI = Schemas['WhoAmI'];

/** A scope pattern: `*` inside one path segment, a segment of exactly `**` for one or more segments. */
export function matches(pattern: string, gun: string): boolean {
  const p = pattern.split('/');
  const g = gun.split('/');
  const seg = (pp: string, gg: string) =>
    new RegExp(
      '^' +
        pp
          .split('*')
          .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
          .join('[^/]*') +
        '$',
    ).test(gg);
  const walk = (i: number, j: number): boolean => {
    if (i === p.length) return j === g.length;
    if (p[i] === '**') {
      for (let k = j + 1; k <= g.length; k++) if (walk(i + 1, k)) return true;
      return false;
    }
    return j < g.length && seg(p[i]!, g[j]!) && walk(i + 1, j + 1);
  };
  return walk(0, 0);
}

export interface Abilities {
  admin: boolean;
  /** May sign tags and co-sign pending changes in this repository. */
  sign(gun: string): boolean;
}

export function abilities(me: WhoAmI): Abilities {
  const admin = me.scopes.includes('admin');
  const signerPatterns = me.scopes.filter((s) => s.startsWith('signer:')).map((s) => s.slice('signer:'.length));
  return { admin, sign: (gun) => admin || signerPatterns.some((p) => matches(p, gun)) };
}

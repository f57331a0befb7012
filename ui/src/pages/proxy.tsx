// What the verifying proxy refused, why, and how often its verdict cache answered.
import type { Ctx } from '../main';

export function ProxyPage(_: { ctx: Ctx }) {
  return (
    <>
      <h1>Proxy</h1>
      <p>Loading…</p>
    </>
  );
}

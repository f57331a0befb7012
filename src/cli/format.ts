// Human-readable output: aligned tables and the `docker trust inspect --pretty` layout.

/** Columns padded to their widest cell, separated by three spaces (as docker prints them). */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

export interface InspectBody {
  name: string;
  signedTags: Array<{ tag: string; digest: string; size: number; signers: string[] }>;
  signers: Array<{ name: string; keys: Array<{ id: string }>; threshold?: number }>;
  administrativeKeys: Array<{ name: string; keys: Array<{ id: string }> }>;
  verified?: boolean;
  message?: string;
}

const short = (id: string) => id.slice(0, 12);

/** What `docker trust inspect --pretty` prints, from trustgate's inspect answer. */
export function prettyInspect(r: InspectBody): string {
  let out = '';
  if (r.verified === false) out += `WARNING: the trust data of ${r.name} does not verify: ${r.message ?? 'unknown reason'}\n\n`;
  if (r.signedTags.length === 0) out += `No signatures for ${r.name}\n\n`;
  else {
    out += `Signatures for ${r.name}\n\n`;
    out += table(
      ['SIGNED TAG', 'DIGEST', 'SIGNERS'],
      r.signedTags.map((t) => [t.tag, t.digest.replace(/^sha256:/, ''), t.signers.join(', ')]),
    );
    out += '\n';
  }
  if (r.signers.length) {
    out += `List of signers and their keys for ${r.name}\n\n`;
    out += table(['SIGNER', 'KEYS'], r.signers.map((s) => [s.name, s.keys.map((k) => short(k.id)).join(', ')]));
    out += '\n';
  }
  out += `Administrative keys for ${r.name}\n\n`;
  for (const a of [...r.administrativeKeys].sort((x, y) => (x.name === 'Repository' ? -1 : y.name === 'Repository' ? 1 : 0))) {
    out += `  ${a.name} Key:\t${a.keys.map((k) => short(k.id)).join(', ')}\n`;
  }
  return out;
}

/** A size in bytes for people. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

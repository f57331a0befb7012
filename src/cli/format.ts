// Human-readable output: aligned tables and the `docker trust inspect --pretty` layout.

/** Columns padded to their widest cell, separated by three spaces. */
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

/**
 * A table as docker's formatter writes it through Go's tabwriter (minwidth 10, padding 3): each
 * column but the last is padded to max(10, widest cell + 3); the last is written as is.
 */
export function dockerTable(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(10, ...all.map((r) => (r[i] ?? '').length + 3)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('') + '\n').join('');
}

const byBytes = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * What `docker trust inspect --pretty NAME` prints (docker/cli inspect_pretty.go), from
 * trustgate's inspect answer: `name` is the repository as the user typed it, as docker echoes it.
 */
export function prettyInspect(r: InspectBody, name = r.name): string {
  let out = '';
  if (r.signedTags.length === 0) out += `\nNo signatures for ${name}\n\n`;
  else {
    out += `\nSignatures for ${name}\n\n`;
    // docker prints "(Repo Admin)" for a tag no delegation signs (its JSON says "Repo Admin").
    const signers = (s: string[]) => (s.length === 1 && s[0] === 'Repo Admin' ? '(Repo Admin)' : [...s].sort(byBytes).join(', '));
    out += dockerTable(
      ['SIGNED TAG', 'DIGEST', 'SIGNERS'],
      r.signedTags.map((t) => [t.tag, t.digest.replace(/^sha256:/, ''), signers(t.signers)]),
    );
  }
  if (r.signers.length) {
    out += `\nList of signers and their keys for ${name}\n\n`;
    out += dockerTable(
      ['SIGNER', 'KEYS'],
      r.signers.map((s) => [
        s.name,
        s.keys
          .map((k) => k.id)
          .sort(byBytes)
          .map((id) => id.slice(0, 12))
          .join(', '),
      ]),
    );
  }
  out += `\nAdministrative keys for ${name}\n\n`;
  // docker sorts the roles by name, descending: targets ("Repository") before root.
  for (const label of ['Repository', 'Root']) {
    const a = r.administrativeKeys.find((x) => x.name === label);
    if (a)
      out += `  ${label} Key:\t${a.keys
        .map((k) => k.id)
        .sort(byBytes)
        .join(', ')}\n`;
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

/**
 * `prefix` then `text` wrapped at `width` columns, continuation lines indented by `indent`
 * (default: the prefix's length). A word longer than a line stays whole.
 */
export function wrap(text: string, width = 100, prefix = '', indent = prefix.length): string {
  const out: string[] = [];
  let line = prefix;
  let empty = true;
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (!empty && line.length + 1 + word.length > width) {
      out.push(line);
      line = ' '.repeat(indent) + word;
    } else line = empty ? line + word : `${line} ${word}`;
    empty = false;
  }
  out.push(line);
  return out.join('\n');
}

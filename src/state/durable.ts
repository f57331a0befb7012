// Durable writes for state that must survive a crash once a request has been answered: key
// files, tokens, pending changes, the audit log. A whole file is written to a temporary file,
// fsynced, renamed over the old one and its directory fsynced, so after a crash either the old
// or the new contents are there, complete; an append is fsynced before it returns.
import { randomBytes } from 'node:crypto';
import { closeSync, fdatasyncSync, fstatSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

function writeAllSync(fd: number, data: string | Buffer, position?: number): void {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off, position === undefined ? null : position + off);
}

/** Makes a directory's entries (a rename, a new or removed file) durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A new file at `path` holding `data`, fsynced; it must not exist (flag `wx`). */
function writeNewFile(path: string, data: string | Buffer, mode: number): void {
  const fd = openSync(path, 'wx', mode);
  try {
    writeAllSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const tmpName = (path: string) => `${path}.${randomBytes(6).toString('hex')}.tmp`;

/** Replaces `path` with `data` atomically and durably (tmp + fsync + rename + fsync of the directory). */
export function writeFileDurable(path: string, data: string | Buffer, mode = 0o600): void {
  const tmp = tmpName(path);
  try {
    writeNewFile(tmp, data, mode);
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // already renamed, or never made
    }
    throw e;
  }
  fsyncDir(dirname(path));
}

/** Creates `path` with `data` durably unless it exists; false when it did (the existing file is kept whole). */
export function createFileDurable(path: string, data: string | Buffer, mode = 0o600): boolean {
  const tmp = tmpName(path);
  writeNewFile(tmp, data, mode);
  try {
    linkSync(tmp, path); // refuses to replace: of racing creators exactly one wins
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return false;
  } finally {
    unlinkSync(tmp);
    fsyncDir(dirname(path));
  }
}

/** Appends `data` to `path` (created with `mode` if missing) and fsyncs it before returning. */
export function appendFileDurable(path: string, data: string | Buffer, mode = 0o600): void {
  const fd = openSync(path, 'a', mode);
  let created = false;
  try {
    created = fstatSync(fd).size === 0; // new (or empty): its directory entry needs an fsync too
    writeAllSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (created) fsyncDir(dirname(path));
}

/** Largest record `overwriteDurable` writes: one disk sector, which a power cut does not tear. */
export const MAX_OVERWRITE_BYTES = 512;

/**
 * Overwrites an existing file of exactly `data`'s length in place and fdatasyncs it: one flush, no
 * journal commit, as neither its size nor its directory entry changes. False, with nothing
 * written, when the file is missing or of another length.
 */
export function overwriteDurable(path: string, data: string | Buffer): boolean {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  if (buf.length > MAX_OVERWRITE_BYTES) throw new Error(`overwriteDurable: ${buf.length} bytes is more than one sector`);
  let fd: number;
  try {
    fd = openSync(path, 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  try {
    if (fstatSync(fd).size !== buf.length) return false;
    writeAllSync(fd, buf, 0);
    fdatasyncSync(fd);
    return true;
  } finally {
    closeSync(fd);
  }
}

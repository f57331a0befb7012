// Whether any connection, in any process, has committed to a WAL-mode SQLite database since the
// last look, without running a statement. `PRAGMA data_version` answers the same question, but
// it is a read transaction: shared-memory locks (fcntl calls) each time, and with several
// processes on one file those calls cost more than the rest of a metadata GET (two cluster
// workers served 17-21k GET/s with it, 27-37k without).
//
// Every commit rewrites the WAL-index header: the first 96 bytes of `<db>-shm`, two copies of a
// 48-byte header whose change counter goes up on each commit (https://www.sqlite.org/walformat.html).
// SQLite keeps that file mapped shared, so a plain read sees what the last commit wrote. Bytes
// that differ from the last look mean "read the database again"; a read torn by a commit in
// progress only costs one extra look.
import { closeSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';

const HEADER_BYTES = 96;
/** mxFrame, the WAL's length in frames, in SQLite's native byte order. */
const MX_FRAME_OFFSET = 16;
const LITTLE_ENDIAN = endianness() === 'LE';

export class WalWatch {
  private last = Buffer.alloc(HEADER_BYTES);
  private now = Buffer.alloc(HEADER_BYTES);
  private first = true;

  private constructor(private fd: number) {}

  /** Watches `<dbPath>-shm`; undefined when there is none (not WAL mode, or an in-memory database). */
  static open(dbPath: string): WalWatch | undefined {
    try {
      return new WalWatch(openSync(`${dbPath}-shm`, 'r'));
    } catch {
      return undefined;
    }
  }

  /** True on the first call and whenever a commit happened since the previous call. */
  changed(): boolean {
    const n = readSync(this.fd, this.now, 0, HEADER_BYTES, 0);
    if (n < HEADER_BYTES) this.now.fill(0, n);
    if (!this.first && this.now.equals(this.last)) return false;
    this.first = false;
    this.now.copy(this.last);
    return true;
  }

  /** How many frames the WAL holds now (0 right after it started over); a torn read may be off once. */
  frames(): number {
    const b = Buffer.alloc(MX_FRAME_OFFSET + 4);
    if (readSync(this.fd, b, 0, b.length, 0) < b.length) return 0;
    return LITTLE_ENDIAN ? b.readUInt32LE(MX_FRAME_OFFSET) : b.readUInt32BE(MX_FRAME_OFFSET);
  }

  close(): void {
    closeSync(this.fd);
  }
}

// Whether any connection, in any process, has committed to a WAL-mode SQLite database since the
// last look, without running a statement: every commit rewrites the WAL-index header at the start
// of `<db>-shm` (https://www.sqlite.org/walformat.html), and a torn read only costs one more look.
// Looked at once per event-loop turn and again when REUSE_MS old; docs/cluster.md says why a
// client still reads its own writes.
import { closeSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';

const HEADER_BYTES = 96;
/** mxFrame, the WAL's length in frames, in SQLite's native byte order. */
const MX_FRAME_OFFSET = 16;
const LITTLE_ENDIAN = endianness() === 'LE';
/** How long one look may stand within a turn. */
export const REUSE_MS = 1;

export class WalWatch {
  private last = Buffer.alloc(HEADER_BYTES);
  private now = Buffer.alloc(HEADER_BYTES);
  private first = true;
  /** A look was taken in this event-loop turn (cleared in its check phase), at lookedAt. */
  private looked = false;
  private lookedAt = 0;
  private readonly turnEnded = () => {
    this.looked = false;
  };

  private constructor(
    private fd: number,
    private reuseMs: number,
  ) {}

  /**
   * Watches `<dbPath>-shm`; undefined when there is none (not WAL mode, or an in-memory database).
   * `reuseMs` (default REUSE_MS) is for tests.
   */
  static open(dbPath: string, reuseMs = REUSE_MS): WalWatch | undefined {
    try {
      return new WalWatch(openSync(`${dbPath}-shm`, 'r'), reuseMs);
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

  /**
   * Whether a commit happened since the previous look, looking at most once per event-loop turn
   * and reuseMs (docs/cluster.md): within a turn, later calls stand on its first look.
   */
  changedThisTurn(): boolean {
    const now = performance.now();
    if (this.looked && now - this.lookedAt < this.reuseMs) return false;
    this.lookedAt = now;
    if (!this.looked) {
      this.looked = true;
      setImmediate(this.turnEnded).unref();
    }
    return this.changed();
  }

  /** The next changedThisTurn() looks again (another process says it has committed). */
  forgetLook(): void {
    this.lookedAt = -Infinity;
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

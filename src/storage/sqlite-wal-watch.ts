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
//
// Even that read is a system call, and at 20-30k metadata GETs/s per server it was a fifth of
// the CPU a GET took. So the store looks once per event-loop turn (changedThisTurn), and again
// whenever its last look is REUSE_MS old. In the common case a request handled in a turn came
// from a socket that the turn's poll reported ready, so its client sent it before the turn's
// first look: a commit whose answer that client had already seen is older than the look, and
// the request is served the state after it. Requests of one turn that raced a commit may be
// served the state before it, as if they had come a moment earlier.
//
// Where that argument does not hold, REUSE_MS bounds how old the state served can be (a look
// older than that is taken again): data read in the turn after its first look (a pipelined
// request, a socket libuv reads again because its buffer filled, a second poll after 1024 ready
// events), and a look taken before the poll (a timer, pending callbacks) or in the check phase,
// which then stands over the next poll (an unref'd immediate does not cut the poll short).
// What must not keep even that moment's state, such as the proxy's cached verdicts, calls
// forgetLook() when another process says it has committed (SqliteStore.committedElsewhere).
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
   * and reuseMs (see the top of this file): within a turn, later calls stand on its first look.
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

// A small structured logger: one JSON line per event on stderr. Field names that could carry
// secrets are masked before anything is written.
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET = /pass(word|phrase)?|secret|token|private|authorization|pin/i;

export type Logger = (level: Level, msg: string, fields?: Record<string, unknown>) => void;

export function createLogger(min: Level = 'info', write: (line: string) => void = (l) => process.stderr.write(l + '\n')): Logger {
  return (level, msg, fields = {}) => {
    if (ORDER[level] < ORDER[min]) return;
    const safe: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(fields)) safe[k] = SECRET.test(k) ? '[redacted]' : v;
    write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...safe }));
  };
}

import type { Config } from '../config.js';

/**
 * The time as the service sees it. Code that decides by the date (deadlines, expiries) asks a
 * clock handed to it instead of `new Date()`, so that tests and staging can move time.
 */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A clock that shows `start` at the moment it is made and runs on in real time from there. */
export function clockStartingAt(start: Date, base: Clock = systemClock): Clock {
  if (Number.isNaN(start.getTime())) throw new RangeError('the clock needs a valid start');
  const offsetMs = start.getTime() - base.now().getTime();
  return { now: () => new Date(base.now().getTime() + offsetMs) };
}

/** The service's clock: CLOCK_START (outside production, see config.ts) or the real time. */
export function clockFromConfig(config: Pick<Config, 'CLOCK_START'>): Clock {
  return config.CLOCK_START ? clockStartingAt(new Date(config.CLOCK_START)) : systemClock;
}

/** For tests: stands still until set or advanced. */
export class TestClock implements Clock {
  #ms: number;

  constructor(start: Date | string) {
    this.#ms = TestClock.#toMs(start);
  }

  now(): Date {
    return new Date(this.#ms);
  }

  set(instant: Date | string): void {
    this.#ms = TestClock.#toMs(instant);
  }

  advance(ms: number): void {
    if (!Number.isFinite(ms)) throw new RangeError(`cannot advance by ${ms} ms`);
    this.#ms += ms;
  }

  static #toMs(instant: Date | string): number {
    const ms = new Date(instant).getTime();
    if (Number.isNaN(ms)) throw new RangeError(`not an instant: ${String(instant)}`);
    return ms;
  }
}

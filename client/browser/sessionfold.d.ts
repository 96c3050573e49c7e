/** Options of {@link start}. Durations are in milliseconds. */
export interface StartOptions {
  /** Base URL of the sessionfold producer, e.g. "https://ingest.example.com". */
  ingestUrl: string;
  /** Returns a fresh bearer token; called again after a 401. */
  token: () => Promise<string>;
  /** The signed-in user; must be the token's subject. */
  userId: string;
  /**
   * E-mail recorded with the session start. The ingest requires one; without
   * it the client sends the placeholder `<userId>@unknown.invalid`.
   */
  email?: string;
  /** Session id; a random one per tab by default. */
  sessionId?: string;
  /** The current page; `location.pathname` by default. */
  page?: () => string;
  /** Time between heartbeats while the tab is visible and used (30 000). */
  heartbeatInterval?: number;
  /** Without input for this long the user counts as away (60 000). */
  idleAfter?: number;
  /** Smallest and largest delay between retries (1 000, 30 000). */
  retryMin?: number;
  retryMax?: number;
  /** How often the end ticket is renewed (300 000). */
  ticketRefresh?: number;
  /** Told of every failed or refused request. */
  onError?: (error: unknown) => void;
}

/** A running presence session. */
export interface Presence {
  readonly sessionId: string;
  /** Ends the session ("logout" by default) and stops. */
  end(reason?: "logout" | "closed"): Promise<void>;
  /** Stops without ending the session; it expires after the idle timeout. */
  stop(): void;
  /** Events not yet accepted by the ingest. */
  pending(): number;
}

/** Starts presence for this tab. */
export function start(options: StartOptions): Presence;

/** Whether a heartbeat is due (the timing rule, exposed for tests). */
export function heartbeatDue(
  state: { visible: boolean; ended: boolean; lastInput: number | null; lastBeat: number | null },
  now: number,
  interval: number,
  idleAfter: number,
): boolean;

/** Delay before retry `attempt`: doubling from `min`, capped at `max`. */
export function retryDelay(attempt: number, min: number, max: number): number;

/** The browser family a user agent names (Chrome, Edge, Firefox, Safari, Opera). */
export function browserFamily(userAgent: string): string | undefined;

/** Browser input event types and the activity kind each counts as. */
export const INPUT_KINDS: Readonly<Record<string, string>>;

/** Default option values. */
export const DEFAULTS: Readonly<{
  heartbeatInterval: number;
  idleAfter: number;
  retryMin: number;
  retryMax: number;
  ticketRefresh: number;
}>;

// TypeScript declarations for wsgate-client.js (docs/js-client.md).

/** A message that arrived on a subscribed filter. */
export interface WsgateMessage {
  topic: string;
  /** A JSON object or array as a value, UTF-8 text as a string, other bytes as a Uint8Array (binary: true). */
  payload: unknown;
  binary: boolean;
  retain: boolean;
}

export type WsgateHandler = (msg: WsgateMessage) => void;

export type WsgateState = "connecting" | "open" | "reconnecting" | "closed";

export interface WsgateClientOptions {
  /** Asked for every connection and before the token's exp; the JWT goes as ?token= (or tokenParam). */
  token?: (() => string | null | undefined | Promise<string | null | undefined>) | null;
  /** Query parameter that carries the token. Default "token". */
  tokenParam?: string;
  /** Sec-WebSocket-Protocol values to offer. Default: none. */
  protocols?: string | string[];
  /** The WebSocket class; default globalThis.WebSocket (Node 18/20: pass the "ws" package). */
  WebSocket?: unknown;
  /** Reconnect after a lost connection. Default true. */
  reconnect?: boolean;
  /** First reconnect delay in ms (default 500), multiplied by factor (2) per attempt up to maxDelay (15000). */
  minDelay?: number;
  maxDelay?: number;
  factor?: number;
  /** Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]. Default 0.2. */
  jitter?: number;
  /** Publishes held while not connected (default 100); past it a publish rejects with code "dropped". */
  maxQueued?: number;
  /** ms to wait for an ack before rejecting with code "timeout"; 0 (default) waits as long as the gateway takes. */
  requestTimeout?: number;
  /** Seconds before the token's exp to send {"refresh"}. Default 60. */
  refreshBefore?: number;
  /** ms to wait for the refresh's reply before reconnecting with the new token instead. Default 10000. */
  refreshTimeout?: number;
}

export interface PublishOptions {
  qos?: 0 | 1 | 2;
  retain?: boolean;
}

export interface SubscribeOptions {
  qos?: 0 | 1 | 2;
}

export interface WsgateEvents {
  open: { protocol: string };
  close: { code: number; reason: string; wasClean: boolean; wasOpen: boolean; willReconnect: boolean };
  reconnecting: { attempt: number; delay: number };
  resubscribed: { subscribed: string[]; failed: { filter: string; error: WsgateError }[] };
  refresh: { ok: boolean; error?: WsgateError };
  error: WsgateError;
  frame: { dir: "in" | "out"; data: string | ArrayBuffer };
}

/**
 * Codes: the gateway's ("bad_json", "bad_request", "bad_topic", "not_allowed",
 * "qos_not_allowed", "not_subscribed", "queue_full", "publish_failed",
 * "subscribe_failed", …) and the client's own ("dropped", "closed",
 * "disconnected", "timeout", "unsubscribed", "token_failed", "connect_failed").
 */
export class WsgateError extends Error {
  readonly code: string;
  /** The id of the request the gateway answered, when it said. */
  readonly request?: number | string;
  readonly filter?: string;
  readonly topic?: string;
  constructor(code: string, message?: string, extra?: object);
}

export class WsgateClient {
  constructor(url: string, options?: WsgateClientOptions);
  readonly state: WsgateState;
  readonly subscriptions: string[];
  readonly queued: number;
  subscribe(filter: string, handler: WsgateHandler, options?: SubscribeOptions): Promise<void>;
  unsubscribe(filter: string, handler?: WsgateHandler): Promise<void>;
  publish(topic: string, payload: unknown, options?: PublishOptions): Promise<void>;
  close(code?: number, reason?: string): void;
  on<K extends keyof WsgateEvents>(type: K, listener: (detail: WsgateEvents[K]) => void): () => void;
  off<K extends keyof WsgateEvents>(type: K, listener: (detail: WsgateEvents[K]) => void): void;
}

export function topicMatches(filter: string, topic: string): boolean;
export function tokenExpiry(token: string | null | undefined): number | null;
export default WsgateClient;

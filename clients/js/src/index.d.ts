/** An answer that is not a success: `status` (0: no answer), and the node's `error` and `detail`. */
export class CourierError extends Error {
  status: number;
  error: string;
  detail: unknown;
}

/** The awaited execution ended other than completed. */
export class ExecutionFailed extends Error {
  execution: { execution_id: string; state: string; error?: unknown };
}

/** Thrown by an activity to fail its attempt. */
export class TaskFailure extends Error {
  constructor(message: string, options?: { kind?: string; retryable?: boolean; details?: unknown; retryAfter?: string });
  kind: string;
  retryable: boolean;
  details?: unknown;
  retryAfter?: string;
}

export interface ConnectOptions {
  /** A bearer token (`worker` scope for a Worker, `dispatch` + `read` for a Client). */
  token?: string;
  /** Milliseconds a request may take (30 000). */
  timeout?: number;
}

export class Client {
  constructor(url: string, options?: ConnectOptions);
  dispatch(fn: string, args?: unknown, options?: Record<string, unknown>): Promise<string>;
  get(id: string): Promise<Record<string, unknown>>;
  result(id: string, options?: { timeout?: number }): Promise<unknown>;
  cancel(id: string, reason?: string): Promise<unknown>;
  signal(id: string, name: string, payload?: unknown): Promise<unknown>;
  setFunction(fn: string, settings?: FunctionSettings): Promise<FunctionView>;
  function(fn: string): Promise<FunctionView | null>;
  resetFunction(fn: string): Promise<boolean>;
}

export class Task {
  id: string;
  executionId: string;
  function: string;
  args: unknown;
  attempt: number;
  queue: string;
  checkpointValue: unknown;
  heartbeat(details?: unknown): Promise<unknown>;
  checkpoint(value: unknown): Promise<unknown>;
  progress(report: { percent?: number; message?: string; step?: string; status?: string; detail?: unknown }): Promise<unknown>;
}

export interface WorkerOptions {
  token?: string;
  workerId?: string;
  queues?: string[];
  /** Tasks run at once (1). */
  concurrency?: number;
  /** Lease asked for at claim, e.g. "30s"; heartbeats every third of it. */
  lease?: string;
  /** Long-poll length of a claim, e.g. "20s". */
  wait?: string;
  log?: { warn?: (message: string) => void };
}

export class Worker {
  constructor(url: string, options?: WorkerOptions);
  activity(name: string, fn: (args: any, task: Task) => unknown | Promise<unknown>): this;
  run(options?: { handleSignals?: boolean }): Promise<void>;
  stop(): void;
}

/** The delivery is not signed with this secret, or is too old. */
export class InvalidSignature extends Error {}

/** Checks a delivery's Standard Webhooks signature and age; the parsed body, or throws InvalidSignature. */
export function verifyWebhook(
  secret: string,
  headers: Record<string, string> | { get(name: string): string | null },
  body: string | Uint8Array,
  options?: { tolerance?: number },
): any;

/** Checks `X-Webhook-Signature: sha256=<hex>`. */
export function verifySeedSignature(secret: string, body: string | Uint8Array, header: string | undefined): boolean;

/** What new tasks of a function get, set for the whole cluster (`PUT /v1/functions/{name}`). */
export interface FunctionSettings {
  retry?: Record<string, unknown>;
  timeout?: string | number;
  queue?: string;
  tags?: string[];
  priority?: number;
  maxConcurrent?: number;
  max_concurrent?: number;
}

/** A function: what is stored for it and what its new tasks get. */
export interface FunctionView {
  name: string;
  settings: Record<string, unknown> | null;
  revision: number | null;
  updated_at: string | null;
  applied: Record<string, unknown>;
}

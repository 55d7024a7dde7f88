// Types for Courier's browser notifications client: notifications.js (a classic
// script defining `window.Courier.notifications`) and notifications.mjs (an ES
// module exporting `notifications`).

/** How a notification is kept: see the server's documentation of modes. */
export type NotificationMode = "queued" | "timeseries" | "ephemeral";

/** What a stream delivers: a notification, or `type: "dismissed"` naming one in `payload.notification_id`. */
export interface NotificationEnvelope {
  /** `"generic"` renders the built-in toast; `"dismissed"` removes one; anything else is for the app. */
  type: string;
  id: string;
  mode: NotificationMode;
  /** Unix seconds. */
  created_at: number;
  /** For `generic`: `title` and `message`, shown as text. */
  payload: { title?: string; message?: string; notification_id?: string; [key: string]: unknown };
  group?: string;
}

export type ConnectionStatus = "connecting" | "connected" | "disconnected" | "reconnecting" | "suspended";

export interface StatusDetail {
  status: ConnectionStatus;
  previous: ConnectionStatus;
  /** Why, when the change was caused by an error or by the server. */
  reason?: string;
  /** The HTTP status that stopped the client (401 without a `tokenProvider`). */
  httpStatus?: number;
}

export interface ModeSettings {
  /** `"server"`: a close button dismisses for the viewer everywhere; `"visual"`: on this page only; `false`: no close button. */
  dismiss?: "server" | "visual" | false;
  /** Milliseconds a visible toast stays, or `false` to stay until dismissed. */
  autoClear?: number | false;
}

export interface Settings {
  queued?: ModeSettings;
  timeseries?: ModeSettings;
  ephemeral?: ModeSettings;
  /** Keep the stream open while the tab is blurred or hidden (reconnecting after more than 30 s hidden). */
  persistConnection?: boolean;
  /** Toasts visible at once; default 3, or 2 below 768 px. More wait, first in first out. */
  maxVisible?: number | null;
}

export interface Options extends Settings {
  /** The Courier node, e.g. `https://courier.example` (default: where the script came from). */
  url?: string;
  /** A connection token (sent as `Authorization: Bearer`). */
  token?: string;
  /** Called for a token when there is none, when it expires within 30 s, and after a 401. */
  tokenProvider?: () => string | Promise<string>;
  /** fetch's `credentials` for the stream and dismissals (default `"same-origin"`). */
  credentials?: RequestCredentials;
  /** `false`: do not connect until `connect()` is called. */
  connect?: boolean;
}

export interface DismissResult {
  ok: boolean;
  status: number;
  body: unknown;
}

export interface NotificationsClient {
  readonly status: ConnectionStatus;
  /** Who the server says this connection is, from the last `sync`. */
  readonly viewer: { session_id: string; user_id?: string | null } | null;
  /** The newest stored notification's time (Unix seconds); setting it makes the next connect replay timeseries notifications after it. */
  lastSeen: number | null;
  configure(settings: Settings): this;
  connect(): this;
  dismiss(id: string): Promise<DismissResult>;
  dismissGroup(group: string): Promise<DismissResult>;
  /** Handles an envelope made by the page itself as if it had arrived on the stream. */
  show(envelope: NotificationEnvelope): void;
  close(): void;
}

export declare function notifications(options?: Options): NotificationsClient;
export default notifications;

declare global {
  interface Window {
    Courier: { notifications: typeof notifications };
    /** Set by a `<script src=".../notifications.js" data-courier-auto>` tag. */
    courierNotifications?: NotificationsClient;
  }
  interface DocumentEventMap {
    "courier:notification": CustomEvent<NotificationEnvelope>;
    "courier:notification-status": CustomEvent<StatusDetail>;
    "courier:notification-sync": CustomEvent<{ viewer: { session_id: string; user_id?: string | null } | null }>;
    "courier:notification-reset": CustomEvent<{ reason: string; after: number | null }>;
    "courier:notification-error": CustomEvent<{ id: string; action: "dismiss"; error: Error }>;
  }
}

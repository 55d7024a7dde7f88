/*! Courier browser notifications client, as an ES module (GET /notifications.mjs).
 *
 *   import { notifications } from "https://courier.example/notifications.mjs";
 *   const n = notifications({ tokenProvider: () => fetch("/my/token").then((r) => r.text()) });
 *
 * The client itself is notifications.js beside this file, loaded once for both
 * builds so the two can never differ; `url` defaults to this module's origin.
 */
import "./notifications.js";

const origin = new URL(import.meta.url).origin;

/** Creates a client connected to `options.url` (default: the origin this module came from). */
export function notifications(options = {}) {
  return globalThis.Courier.notifications({ ...options, url: options.url || origin });
}

export default notifications;

// An external worker in JavaScript: serves `resize` to a Courier node, and
// dispatches one execution of it to show the round trip.
//
//   npm install ./clients/js
//   courier serve &                       # http://127.0.0.1:8080
//   node examples/worker.mjs
import { Client, TaskFailure, Worker } from "courier-client";

const url = process.env.COURIER_URL ?? "http://127.0.0.1:8080";
const token = process.env.COURIER_TOKEN; // a `worker` (and `dispatch`+`read`) token if the node has tokens

const worker = new Worker(url, { token, concurrency: 4 }).activity("resize", async (args, task) => {
  if (!(args.width > 0)) throw new TaskFailure("width must be positive", { kind: "invalid", retryable: false });
  await task.progress({ percent: 50, message: "resizing" });
  return { width: args.width / 2 };
});
const running = worker.run({ handleSignals: false });

const client = new Client(url, { token });
const id = await client.dispatch("resize", { width: 640 });
console.log("resize ->", await client.result(id, { timeout: 60_000 }));
worker.stop();
await running;

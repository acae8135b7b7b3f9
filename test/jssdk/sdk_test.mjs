// Drives one pbe tenant with the official PocketBase JS SDK, unchanged and
// pointed at the tenant's own host: superuser auth, collection and record
// CRUD, user auth, file upload and download, realtime, and isolation from a
// second tenant. Usage:
//   node sdk_test.mjs <port> <tenant> <other-tenant> <admin-email> <admin-password>
// *.localhost is resolved to 127.0.0.1 here (browsers and curl do that
// themselves; Node's resolver does not).
import dns from "node:dns";
import { createRequire } from "node:module";
import PocketBase from "pocketbase";

const require = createRequire(import.meta.url);
const origLookup = dns.lookup;
dns.lookup = (host, opts, cb) => {
  if (typeof opts === "function") [cb, opts] = [opts, {}];
  if (host === "localhost" || host.endsWith(".localhost")) {
    return opts && opts.all ? cb(null, [{ address: "127.0.0.1", family: 4 }]) : cb(null, "127.0.0.1", 4);
  }
  return origLookup(host, opts, cb);
};
globalThis.EventSource = require("eventsource");

const [port, tenant, other, email, password] = process.argv.slice(2);
const pb = new PocketBase(`http://${tenant}.localhost:${port}`);
const step = (name) => console.log("step:", name);
const assert = (cond, msg) => { if (!cond) throw new Error("assertion failed: " + msg); };

step("superuser auth");
await pb.collection("_superusers").authWithPassword(email, password);
assert(pb.authStore.isValid, "superuser token valid");
const superToken = pb.authStore.token;

step("create collection");
await pb.collections.create({
  name: "posts",
  type: "base",
  listRule: "", viewRule: "", createRule: "", updateRule: "", deleteRule: "",
  fields: [
    { name: "title", type: "text", required: true },
    { name: "image", type: "file", maxSelect: 1, maxSize: 5242880 },
  ],
});

step("realtime subscribe");
const events = [];
let gotEvent;
const eventSeen = new Promise((resolve) => (gotEvent = resolve));
await pb.collection("posts").subscribe("*", (e) => { events.push(e); gotEvent(); });

step("create record with file");
const payload = new Uint8Array(4096).map((_, i) => (i * 7) % 251);
const form = new FormData();
form.append("title", "hello from the sdk");
form.append("image", new Blob([payload], { type: "application/octet-stream" }), "payload.bin");
const rec = await pb.collection("posts").create(form);
assert(rec.title === "hello from the sdk", "title round-trips");
assert(rec.image, "file stored");

step("realtime event");
await Promise.race([eventSeen, new Promise((_, rej) => setTimeout(() => rej(new Error("no realtime event within 10s")), 10000))]);
assert(events[0].action === "create" && events[0].record.id === rec.id, "realtime create event for the record");
await pb.collection("posts").unsubscribe();

step("file download");
const fileRes = await fetch(pb.files.getURL(rec, rec.image));
assert(fileRes.ok, "file download status " + fileRes.status);
const got = new Uint8Array(await fileRes.arrayBuffer());
assert(got.length === payload.length && got.every((b, i) => b === payload[i]), "downloaded file is byte-identical");

step("list, update, get, delete");
const list = await pb.collection("posts").getList(1, 20);
assert(list.totalItems === 1, "one record listed, got " + list.totalItems);
await pb.collection("posts").update(rec.id, { title: "updated" });
assert((await pb.collection("posts").getOne(rec.id)).title === "updated", "update visible");
await pb.collection("posts").delete(rec.id);
assert((await pb.collection("posts").getList(1, 20)).totalItems === 0, "record deleted");

step("user auth");
await pb.collection("users").create({ email: "user@example.com", password: "user-password-1", passwordConfirm: "user-password-1" });
const user = new PocketBase(`http://${tenant}.localhost:${port}`);
await user.collection("users").authWithPassword("user@example.com", "user-password-1");
assert(user.authStore.record.email === "user@example.com", "user authenticated");

step("isolation from the other tenant");
const otherPb = new PocketBase(`http://${other}.localhost:${port}`);
otherPb.authStore.save(superToken, null);
let status = 0;
try { await otherPb.collections.getList(1, 1); } catch (e) { status = e.status; }
assert(status === 401, "a superuser token of one tenant is refused by another, got " + status);
status = 0;
try { await otherPb.collection("posts").getList(1, 1); } catch (e) { status = e.status; }
assert(status === 404, "a collection of one tenant does not exist in another, got " + status);
status = 0;
try { await otherPb.collection("users").authWithPassword("user@example.com", "user-password-1"); } catch (e) { status = e.status; }
assert(status === 400, "a user of one tenant cannot log in to another, got " + status);

console.log("OK");

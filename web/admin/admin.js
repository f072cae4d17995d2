// The admin UI: plain modules, no build step, on top of the same client
// apps use (/sdk/pulsebase.js). Routes are `#/<page>/<param>`; each page is
// a function that fills `app` and may return a cleanup for when it is left.

import { pb, go } from "./ui.js";
import { signin, setup } from "./pages/signin.js";
import { dashboard } from "./pages/dashboard.js";
import { collections } from "./pages/collections.js";
import { records } from "./pages/records.js";
import { chart } from "./pages/chart.js";
import { users } from "./pages/users.js";
import { keys } from "./pages/keys.js";
import { topics } from "./pages/topics.js";
import { liveConsole } from "./pages/console.js";
import { settings } from "./pages/settings.js";
import { logs } from "./pages/logs.js";
import { resetPassword, verifyEmail } from "./pages/account.js";
import { apiPreview } from "./pages/api_preview.js";

const app = document.getElementById("app");
const bar = document.getElementById("bar");
const menu = document.getElementById("nav-toggle");
const views = { signin, setup, dashboard, collections, records, chart, users, keys, topics, console: liveConsole, logs, settings, api: apiPreview, "reset-password": resetPassword, verify: verifyEmail };
// Pages for anyone, signed in or not: the token in the mailed link is the proof.
const publicViews = new Set([setup, resetPassword, verifyEmail]);
let leaveView = null;

function route() {
  if (leaveView) leaveView();
  leaveView = null;
  const [name = "", ...params] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const signedIn = Boolean(pb.user);
  openMenu(false);
  menu.hidden = !signedIn;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  document.getElementById("who").textContent = signedIn ? pb.user.email : "";
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === (name || "dashboard"));
  let view = views[name] || dashboard;
  if (!signedIn && !publicViews.has(view)) view = signin;
  app.replaceChildren();
  leaveView = view(app, ...params) || null;
}

/** On a narrow screen the links sit behind the Menu button; a page change folds them again. */
function openMenu(open) {
  bar.classList.toggle("menu-open", open);
  menu.setAttribute("aria-expanded", String(open));
  menu.textContent = open ? "Close" : "Menu";
}
menu.addEventListener("click", () => openMenu(!bar.classList.contains("menu-open")));
document.getElementById("nav").addEventListener("click", (event) => event.target.closest("a") && openMenu(false));
document.addEventListener("keydown", (event) => event.key === "Escape" && openMenu(false));

document.getElementById("signout").addEventListener("click", async () => {
  pb.realtime.close();
  await pb.signOut().catch(() => {});
  go("#/signin");
});
pb.onAuthChange(() => {
  if (!pb.user) route();
});
window.addEventListener("hashchange", route);
route();

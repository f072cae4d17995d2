// The pages links in account mail lead to (`app_url`/admin/#/...): choosing
// a new password, and confirming an address. Any user lands here, not only
// admins, and without signing in: the token in the link is the proof.

import { pb, h, message } from "../ui.js";

export function resetPassword(app, token = "") {
  const error = h("p", { class: "error", role: "alert" });
  const done = h("p", { class: "hint", id: "reset-done", hidden: true }, "Your password is changed. Every device that was signed in must sign in again with it.");
  const form = h(
    "form",
    { class: "panel narrow", id: "reset-form" },
    h("h1", {}, "Choose a new password"),
    h("label", { for: "password" }, "New password (8 characters or more)"),
    h("input", { id: "password", name: "password", type: "password", autocomplete: "new-password", minlength: 8, required: true }),
    h("button", { type: "submit" }, "Set password"),
    error,
    done,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await pb.resetPassword(token, form.password.value);
      form.password.disabled = true;
      form.querySelector("button").disabled = true;
      done.hidden = false;
    } catch (e) {
      error.textContent = message(e, { details: true });
    }
  });
  app.append(form);
}

export function verifyEmail(app, token = "") {
  const status = h("p", { id: "verify-status", role: "status" }, "Confirming your address…");
  app.append(h("div", { class: "panel narrow" }, h("h1", {}, "Confirm your email address"), status));
  pb.verifyEmail(token)
    .then((user) => {
      status.textContent = `${user.email} is confirmed. You can close this page.`;
    })
    .catch((e) => {
      status.textContent = message(e, { details: true });
      status.classList.add("error");
    });
}

// Sign-in and the first-admin setup (the one-time code the server printed).

import { pb, h, message, go } from "../ui.js";

export function signin(app) {
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "panel narrow", id: "signin-form" },
    h("h1", {}, "Sign in"),
    h("label", { for: "email" }, "Email"),
    h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true }),
    h("label", { for: "password" }, "Password"),
    h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true }),
    h("button", { type: "submit" }, "Sign in"),
    error,
    h("p", { class: "hint", id: "setup-hint", hidden: true }, "No admin yet? ", h("a", { href: "#/setup" }, "Create the first one"), " with the setup code the server printed."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await pb.signIn(form.email.value, form.password.value);
      if (!pb.user.roles.includes("admin")) {
        await pb.signOut();
        throw new Error("this account is not an admin");
      }
      // Back to the page that asked for sign-in, if it was one.
      go(/^#\/[a-z]/.test(location.hash) && !/^#\/(signin|setup)/.test(location.hash) ? location.hash : "#/dashboard");
    } catch (e) {
      error.textContent = message(e);
    }
  });
  app.append(form);
  pb.request("GET", "/api/setup")
    .then((state) => {
      form.querySelector("#setup-hint").hidden = !state.needed;
      // A fresh install has no one to sign in yet: straight to the setup
      // form, unless the visitor went elsewhere meanwhile.
      if (state.needed && form.isConnected) go("#/setup");
    })
    .catch(() => {});
}

export function setup(app) {
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "panel narrow", id: "setup-form" },
    h("h1", {}, "Create the first admin"),
    h("p", { class: "hint" }, "Use the one-time setup code the server printed when it started."),
    h("label", { for: "code" }, "Setup code"),
    h("input", { id: "code", name: "code", required: true, autocomplete: "off" }),
    h("label", { for: "email" }, "Email"),
    h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true }),
    h("label", { for: "password" }, "Password (8 characters or more)"),
    h("input", { id: "password", name: "password", type: "password", autocomplete: "new-password", minlength: 8, required: true }),
    h("button", { type: "submit" }, "Create admin"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await pb.setup(form.code.value.trim(), form.email.value, form.password.value);
      go("#/dashboard");
    } catch (e) {
      error.textContent = message(e);
    }
  });
  app.append(form);
}

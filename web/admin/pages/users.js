// Users: list with the server's filter and paging, create, edit (roles,
// groups, tenant, disabled), reset a password, delete.

import { pb, h, message, go, names, field, showErrors, when } from "../ui.js";

const PAGE = 50;

const sameList = (a, b) => JSON.stringify(a) === JSON.stringify(b);

export function users(app) {
  const rows = h("tbody", { id: "users-rows" });
  const listError = h("p", { class: "error", role: "alert", id: "users-error" });
  const more = h("button", { type: "button", class: "secondary", id: "users-more", hidden: true, onclick: () => load(true) }, "Load more");
  const editor = h("div", { id: "user-editor" });
  let filter = "";
  let cursor = null;

  const row = (u) =>
    h(
      "tr",
      { "data-id": u.id, class: u.disabled ? "user-disabled" : null },
      h("td", {}, u.email),
      h("td", {}, u.name || ""),
      h("td", {}, u.roles.join(", ")),
      h("td", {}, u.groups.join(", ")),
      h("td", {}, u.tenant ?? ""),
      h("td", {}, u.disabled ? "disabled" : ""),
      h("td", { title: u.created, class: "nowrap" }, when(u.created)),
      h("td", { class: "row-actions" }, h("button", { type: "button", class: "secondary", onclick: () => edit(u) }, "Edit")),
    );

  // `append` loads the next page after the rows shown; otherwise start over.
  // A new filter is kept only once the server took it, so a typo does not
  // break the reloads after a create or delete.
  const load = async (append = false, nextFilter = filter) => {
    try {
      const page = await pb.request("GET", "/api/users", undefined, { query: { filter: nextFilter || null, limit: PAGE, cursor: append ? cursor : null } });
      filter = nextFilter;
      if (append) rows.append(...page.items.map(row));
      else rows.replaceChildren(...page.items.map(row));
      if (!append && !page.items.length) rows.append(h("tr", {}, h("td", { colspan: 8, class: "hint" }, filter ? "No user matches the filter." : "No users.")));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      listError.textContent = "";
    } catch (e) {
      listError.textContent = message(e);
    }
  };

  const search = h(
    "form",
    { id: "users-filter-form", class: "row" },
    h("div", {}, h("label", { for: "users-filter" }, "Filter"), h("input", { id: "users-filter", name: "filter", placeholder: "e.g. tenant = 'acme' or 'admin' in roles" })),
    h("div", { class: "row-buttons" }, h("button", { type: "submit" }, "Apply"), " ", h("button", { type: "button", class: "secondary", onclick: clearFilter }, "Clear")),
  );
  function clearFilter() {
    search.filter.value = "";
    search.requestSubmit();
  }
  search.addEventListener("submit", (event) => {
    event.preventDefault();
    load(false, search.filter.value.trim());
  });

  // ---- create ----
  const createError = h("p", { class: "error", role: "alert", id: "user-form-error" });
  const create = h(
    "form",
    { class: "panel", id: "user-form" },
    h("h2", {}, "Create a user"),
    h(
      "div",
      { class: "row" },
      field("user-email", "Email", h("input", { id: "user-email", name: "email", type: "email", required: true, autocomplete: "off" })),
      field("user-password", "Password", h("input", { id: "user-password", name: "password", type: "password", required: true, autocomplete: "new-password", placeholder: "at least 8 characters" })),
      field("user-name", "Name", h("input", { id: "user-name", name: "name" })),
    ),
    h(
      "div",
      { class: "row" },
      field("user-roles", "Roles", h("input", { id: "user-roles", name: "roles", placeholder: "comma-separated: viewer, collector" })),
      field("user-groups", "Groups", h("input", { id: "user-groups", name: "groups", placeholder: "comma-separated: lab, north" })),
      field("user-tenant", "Tenant", h("input", { id: "user-tenant", name: "tenant", placeholder: "none" })),
    ),
    h("button", { type: "submit" }, "Create"),
    createError,
  );
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = { email: create.email.value.trim(), password: create.password.value, name: create.name.value.trim(), roles: names(create.roles.value), groups: names(create.groups.value) };
    // An empty tenant means none (null), not the tenant "".
    if (create.tenant.value.trim()) user.tenant = create.tenant.value.trim();
    try {
      await pb.request("POST", "/api/users", user);
      create.reset();
      showErrors(create, "user", null, createError);
      await load();
    } catch (e) {
      showErrors(create, "user", e, createError, { conflict: "email" });
    }
  });

  // ---- edit ----
  const edit = (user, note = "") => {
    editor.replaceChildren(editPanel(user, note));
    editor.scrollIntoView({ block: "nearest" });
  };
  const closeEditor = () => editor.replaceChildren();
  const replaceRow = (user) => rows.querySelector(`tr[data-id="${CSS.escape(user.id)}"]`)?.replaceWith(row(user));

  // Editing yourself can lock you out: ask first. Changing your own roles or
  // password ends your session too (the server bumps the token generation).
  const selfCheck = (user, change) => {
    if (!pb.user || user.id !== pb.user.id) return { ok: true, signsOut: false };
    const warnings = [];
    if (change.roles && user.roles.includes("admin") && !change.roles.includes("admin")) warnings.push("removes your own admin role: you lose access to this admin UI");
    if (change.disabled === true) warnings.push("disables your own account: you cannot sign in again");
    const signsOut = Boolean(change.roles || change.password || change.disabled);
    if (signsOut && !warnings.length) warnings.push("changes your own roles or password: you will be signed out and must sign in again");
    if (!warnings.length) return { ok: true, signsOut };
    return { ok: confirm(`This ${warnings.join(", and ")}. Continue?`), signsOut };
  };
  const save = async (user, change, done) => {
    const check = selfCheck(user, change);
    if (!check.ok) return null;
    const updated = await pb.request("PATCH", `/api/users/${encodeURIComponent(user.id)}`, change);
    if (check.signsOut) {
      await pb.signOut().catch(() => {});
      go("#/signin");
      return null;
    }
    replaceRow(updated);
    done(updated);
    return updated;
  };

  const editPanel = (user, note) => {
    const error = h("p", { class: "error", role: "alert", id: "user-edit-error" });
    const saved = h("span", { class: "hint", id: "user-edit-result", role: "status" }, note);
    const form = h(
      "form",
      { id: "user-edit-form" },
      h(
        "div",
        { class: "row" },
        field("edit-email", "Email", h("input", { id: "edit-email", name: "email", type: "email", required: true, value: user.email })),
        field("edit-name", "Name", h("input", { id: "edit-name", name: "name", value: user.name || "" })),
        field("edit-tenant", "Tenant", h("input", { id: "edit-tenant", name: "tenant", value: user.tenant ?? "", placeholder: "none" })),
      ),
      h(
        "div",
        { class: "row" },
        field("edit-roles", "Roles", h("input", { id: "edit-roles", name: "roles", value: user.roles.join(", "), placeholder: "comma-separated" })),
        field("edit-groups", "Groups", h("input", { id: "edit-groups", name: "groups", value: user.groups.join(", "), placeholder: "comma-separated" })),
      ),
      h("div", { class: "checks" }, h("label", {}, h("input", { type: "checkbox", id: "edit-disabled", name: "disabled", checked: user.disabled }), "Disabled (cannot sign in)")),
      h("button", { type: "submit", id: "edit-save" }, "Save"),
      " ",
      h("button", { type: "button", class: "secondary", onclick: closeEditor }, "Close"),
      " ",
      saved,
      error,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      saved.textContent = "";
      error.textContent = "";
      // Only what changed, so the self-lockout check above sees real changes
      // and an untouched field is never rewritten from a stale copy.
      const change = {};
      const tenant = form.tenant.value.trim() || null;
      if (form.email.value.trim() !== user.email) change.email = form.email.value.trim();
      if (form.name.value.trim() !== (user.name || "")) change.name = form.name.value.trim();
      if (tenant !== (user.tenant || null)) change.tenant = tenant;
      if (!sameList(names(form.roles.value), user.roles)) change.roles = names(form.roles.value);
      if (!sameList(names(form.groups.value), user.groups)) change.groups = names(form.groups.value);
      if (form.disabled.checked !== user.disabled) change.disabled = form.disabled.checked;
      if (!Object.keys(change).length) {
        saved.textContent = "Nothing changed.";
        return;
      }
      try {
        await save(user, change, (updated) => edit(updated, "Saved."));
      } catch (e) {
        showErrors(form, "edit", e, error, { conflict: "email" });
      }
    });

    const passwordError = h("p", { class: "error", role: "alert", id: "user-reset-error" });
    const passwordDone = h("p", { class: "hint", id: "user-reset-result", role: "status" });
    const password = h(
      "form",
      { id: "user-password-form" },
      h(
        "div",
        { class: "row" },
        field("reset-password", "New password", h("input", { id: "reset-password", name: "password", type: "password", required: true, autocomplete: "new-password", placeholder: "at least 8 characters" })),
        h("div", { class: "row-buttons" }, h("button", { type: "submit" }, "Set password")),
      ),
      passwordError,
      passwordDone,
    );
    password.addEventListener("submit", async (event) => {
      event.preventDefault();
      passwordDone.textContent = "";
      try {
        const updated = await save(user, { password: password.password.value }, () => {});
        if (!updated) return;
        password.reset();
        showErrors(password, "reset", null, passwordError);
        passwordDone.textContent = "Password changed; their existing sessions were signed out.";
      } catch (e) {
        showErrors(password, "reset", e, passwordError);
      }
    });

    const remove = async () => {
      const self = pb.user && user.id === pb.user.id;
      if (!confirm(self ? `Delete your own account ${user.email}? You will be signed out and cannot sign in again.` : `Delete user ${user.email}? This cannot be undone.`)) return;
      try {
        await pb.request("DELETE", `/api/users/${encodeURIComponent(user.id)}`);
        if (self) {
          await pb.signOut().catch(() => {});
          return go("#/signin");
        }
        closeEditor();
        rows.querySelector(`tr[data-id="${CSS.escape(user.id)}"]`)?.remove();
      } catch (e) {
        error.textContent = message(e);
      }
    };

    return h(
      "section",
      { class: "panel", id: "user-edit", "data-id": user.id },
      h("h2", {}, `Edit ${user.email}`),
      h("p", { class: "hint" }, "Disabling a user, or changing their roles or password, signs them out at once: their tokens stop working and their live connections are closed."),
      form,
      h("h2", { class: "subhead" }, "Reset the password"),
      password,
      h("div", { class: "user-remove" }, h("button", { type: "button", class: "secondary", id: "user-delete", onclick: remove }, "Delete this user"), " ", h("span", { class: "hint" }, "Their records stay; their sessions end.")),
    );
  };

  app.append(
    h("h1", {}, "Users"),
    h(
      "section",
      { class: "panel" },
      search,
      h("div", { class: "scroll" }, h("table", { id: "users-table" }, h("thead", {}, h("tr", {}, ["email", "name", "roles", "groups", "tenant", "status", "created (UTC)", ""].map((t) => h("th", {}, t)))), rows)),
      more,
      listError,
    ),
    editor,
    create,
  );
  load();
}

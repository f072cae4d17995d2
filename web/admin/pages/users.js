// TODO(issue 5): the users page, being written this session.

import { h } from "../ui.js";

export function users(app) {
  app.append(h("h1", {}, "users"));
}

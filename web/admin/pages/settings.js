// TODO(issue 5): the settings page, being written this session.

import { h } from "../ui.js";

export function settings(app) {
  app.append(h("h1", {}, "settings"));
}

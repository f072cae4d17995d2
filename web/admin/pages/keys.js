// TODO(issue 5): the keys page, being written this session.

import { h } from "../ui.js";

export function keys(app) {
  app.append(h("h1", {}, "keys"));
}

// TODO(issue 5): the collections page, being written this session.

import { h } from "../ui.js";

export function collections(app) {
  app.append(h("h1", {}, "collections"));
}

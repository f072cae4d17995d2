// TODO(issue 5): the records page, being written this session.

import { h } from "../ui.js";

export function records(app) {
  app.append(h("h1", {}, "records"));
}

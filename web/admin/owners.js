// Who an id is: the records page's owner column and the request log's
// actors show a user's email or an API key's name instead of a bare id
// (the id stays in the cell's title). Looked up once per id and kept for
// as long as the admin UI stays open.

import { pb } from "./ui.js";

const known = new Map(); // id → what to show
const LOOKUPS = 20; // users looked up one by one at most per call

/** What to show for `id`, once `lookUp` has found it; undefined before. */
export const nameOf = (id) => known.get(id);

/**
 * Finds the ids not known yet: API keys from one listing, users one by
 * one. Resolves true when something new is known (so cells can be
 * redrawn); an id nobody has (a deleted user, the demo's devices) shows as
 * itself.
 */
export async function lookUp(ids) {
  let unknown = [...new Set(ids)].filter((id) => id && !known.has(id));
  if (!unknown.length) return false;
  try {
    const { items } = await pb.request("GET", "/api/keys");
    for (const key of items || []) known.set(key.id, `key: ${key.name}`);
  } catch {
    // Not fatal: the ids are shown as they are.
  }
  unknown = unknown.filter((id) => !known.has(id)).slice(0, LOOKUPS);
  await Promise.all(
    unknown.map((id) =>
      pb.request("GET", `/api/users/${encodeURIComponent(id)}`).then(
        (user) => known.set(id, user.email),
        () => known.set(id, id),
      ),
    ),
  );
  return true;
}

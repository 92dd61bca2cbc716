// The management API, called with the logged-in user's HTTP basic credentials. They live in
// sessionStorage (gone when the tab closes), as RabbitMQ's UI keeps them in its auth cookie.

const KEY = 'pigeon.auth';

export const enc = encodeURIComponent;

export class ApiError extends Error {
  constructor(status, body) {
    const reason = (body && (body.reason || body.error)) || `HTTP ${status}`;
    super(typeof reason === 'string' ? reason : JSON.stringify(reason));
    this.status = status;
    this.body = body;
  }
}

export function hasCredentials() {
  return sessionStorage.getItem(KEY) !== null;
}

export function setCredentials(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  sessionStorage.setItem(KEY, btoa(bin));
}

export function forget() {
  sessionStorage.removeItem(KEY);
}

// Calls the API. `body` (an object) goes as JSON. Answers the parsed JSON, the text, or null
// for 204. Throws ApiError for any other status; a failed login (not a missing tag or
// permission) also tells the app to show the log-in page again.
export async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const h = { ...headers };
  const auth = sessionStorage.getItem(KEY);
  if (auth) h.authorization = `Basic ${auth}`;
  let payload = body;
  if (body !== undefined && typeof body !== 'string') {
    h['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  // credentials 'omit': the browser neither adds cached credentials nor shows its own
  // log-in prompt on a 401; the Authorization header above is ours.
  const r = await fetch(path, { method, headers: h, body: payload, credentials: 'omit', signal });
  if (r.status === 204) return null;
  const type = r.headers.get('content-type') || '';
  let data = null;
  if (type.includes('json')) {
    data = await r.json().catch(() => null);
  } else {
    data = await r.text();
  }
  if (!r.ok) {
    if (r.status === 401 && data && data.reason === 'Login failed') {
      window.dispatchEvent(new CustomEvent('pigeon:logout'));
    }
    throw new ApiError(r.status, data);
  }
  return data;
}

// GET that answers `fallback` on 404 (endpoints other parts of Pigeon may not have yet).
export async function optional(path, fallback = null) {
  try {
    return await api(path);
  } catch (e) {
    if (e.status === 404 || e.status === 405) return fallback;
    throw e;
  }
}

export function queuePath(vhost, name) {
  return `/api/queues/${enc(vhost)}/${enc(name)}`;
}

export function exchangePath(vhost, name) {
  return `/api/exchanges/${enc(vhost)}/${enc(name === '' ? 'amq.default' : name)}`;
}

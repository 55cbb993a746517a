// session.js: who is signed in. The bearer token lives in sessionStorage only (this tab, until
// it closes or the person signs out): never in persistent storage, a cookie or the URL.

const KEY = 'gatehouse.portal.token';

let me = null;
let onExpired = () => {};

export const session = {
  token: () => window.sessionStorage.getItem(KEY),
  signIn(token) {
    window.sessionStorage.setItem(KEY, token);
    me = null;
  },
  // signOut forgets the token and everything learned with it.
  signOut() {
    window.sessionStorage.removeItem(KEY);
    me = null;
  },
  me: () => me,
  setMe(value) {
    me = value;
  },
  // expired is called by the API layer on a 401: the token is no longer accepted.
  expired(err) {
    if (!window.sessionStorage.getItem(KEY)) return;
    window.sessionStorage.removeItem(KEY);
    me = null;
    onExpired(err);
  },
  onExpired(fn) {
    onExpired = fn;
  },
};

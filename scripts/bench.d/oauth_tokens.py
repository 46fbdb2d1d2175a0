#!/usr/bin/env python3
"""Refresh tokens for `scripts/bench oauth`, obtained the way a partner's app gets
them (standard library only).

    oauth_tokens.py --accounts URL --issuer URL --client-id ID --client-secret S \
        --redirect-uri URI --count N --out FILE

Signs a new user up (POST /account), signs in on the login page (CSRF field and
cookie, as a browser), then N times: GET /oauth/authorize (the consent form the
first time, remembered afterwards), and redeems the code at POST /oauth/token with
HTTP Basic client authentication. Writes the N refresh tokens, one a line, to FILE,
and prints one JSON line: {"refresh_tokens": N, "access_token": "..."} (the last
access token, user-bound, for checks).
"""

import argparse
import base64
import html
import http.client
import json
import secrets
import sys
import urllib.parse


class Agent:
    """Keeps cookies for 127.0.0.1 (every port, as browsers do), follows no redirect."""

    def __init__(self):
        self.cookies = {}
        self.conns = {}

    def request(self, method, url, body=None, headers=None):
        u = urllib.parse.urlsplit(url)
        conn = self.conns.get(u.netloc)
        if conn is None:
            conn = self.conns[u.netloc] = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        path = u.path + ("?" + u.query if u.query else "")
        conn.request(method, path, body=body, headers=h)
        res = conn.getresponse()
        data = res.read().decode("utf-8", "replace")
        for c in res.headers.get_all("Set-Cookie") or []:
            pair = c.split(";", 1)[0]
            if "=" in pair:
                k, v = pair.split("=", 1)
                if not v or "Max-Age=0" in c:
                    self.cookies.pop(k, None)
                else:
                    self.cookies[k] = v
        return res.status, res.headers.get("Location"), data

    def form(self, url, fields, headers=None):
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        h.update(headers or {})
        return self.request("POST", url, urllib.parse.urlencode(fields), h)


def hidden_fields(page):
    out = []
    for part in page.split('<input type="hidden" ')[1:]:
        try:
            name = part.split('name="', 1)[1].split('"', 1)[0]
            value = part.split('value="', 1)[1].split('"', 1)[0]
        except IndexError:
            continue
        out.append((html.unescape(name), html.unescape(value)))
    return out


def main():
    p = argparse.ArgumentParser()
    for a in ("accounts", "issuer", "client-id", "client-secret", "redirect-uri", "out"):
        p.add_argument("--" + a, required=True)
    p.add_argument("--count", type=int, required=True)
    a = p.parse_args()
    agent = Agent()

    email = "bench-%s@bench.example.com" % secrets.token_hex(6)
    password = "bench-" + secrets.token_hex(5)  # 6 to 18 characters
    status, _, body = agent.request(
        "POST", a.accounts + "/account",
        json.dumps({"contacts": [["EMAIL", email, True]], "password": password}),
        {"Content-Type": "application/json"})
    if status != 201:
        sys.exit("sign-up answered %d: %s" % (status, body[:300]))
    status, _, page = agent.request("GET", a.accounts + "/login")
    fields = hidden_fields(page) + [("login", email), ("password", password)]
    status, _, body = agent.form(a.accounts + "/login", fields)
    if status != 303:
        sys.exit("login answered %d: %s" % (status, body[:300]))

    basic = "Basic " + base64.b64encode(("%s:%s" % (
        urllib.parse.quote(a.client_id, safe=""), urllib.parse.quote(a.client_secret, safe=""))).encode()).decode()
    tokens, access = [], None
    for i in range(a.count):
        query = urllib.parse.urlencode({
            "client_id": a.client_id, "redirect_uri": a.redirect_uri, "response_type": "code",
            "scope": "profile", "state": "s%d" % i})
        url = a.issuer + "/oauth/authorize?" + query
        status, loc, page = agent.request("GET", url)
        if loc is None:
            if status != 200 or 'id="allow"' not in page:
                sys.exit("authorize answered %d: %s" % (status, page[:300]))
            status, loc, page = agent.form(a.issuer + "/oauth/authorize",
                                           hidden_fields(page) + [("decision", "allow")])
            if loc is None:
                sys.exit("consent answered %d: %s" % (status, page[:300]))
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
        if "code" not in q:
            sys.exit("no code in %s" % loc)
        status, _, body = agent.form(a.issuer + "/oauth/token", {
            "grant_type": "authorization_code", "code": q["code"][0],
            "redirect_uri": a.redirect_uri}, {"Authorization": basic})
        if status != 200:
            sys.exit("redeeming a code answered %d: %s" % (status, body[:300]))
        doc = json.loads(body)
        tokens.append(doc["refresh_token"])
        access = doc["access_token"]
    with open(a.out, "w") as f:
        f.write("\n".join(tokens) + "\n")
    print(json.dumps({"refresh_tokens": len(tokens), "access_token": access}))


if __name__ == "__main__":
    main()

"""What `virtsnap serve` refuses: requests without the access token, cross-site actions (from a real page on
another origin, and crafted ones), unexpected Host headers, any action when --readonly, non-loopback
listening unless asked, and a missing 'web' extra."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading

import httpx
from selenium.webdriver.common.by import By
from webtools import WAIT, api_client, open_page, serve_process, wait


def snapshot_names(client: httpx.Client) -> list[str]:
    return [s["name"] for s in client.get("/api/tree", params={"domain": "test"}).json()["snapshots"]]


def one_changed(token: str) -> str:
    """`token` with its last character changed (never to itself: the same token would pass, as it must)."""
    return token[:-1] + ("y" if token.endswith("x") else "x")


def test_every_request_needs_the_token():
    with serve_process("-c", "test:///default") as served:
        for path in ("/", "/api/domains", "/api/tree?domain=test", "/static/app.js", "/api/session"):
            bare = httpx.get(served.base + path, timeout=WAIT)
            assert bare.status_code == 403, path
            wrong = httpx.get(served.base + path, params={"token": one_changed(served.token)}, timeout=WAIT)
            assert wrong.status_code == 403, path
        assert "access token" in httpx.get(served.base + "/", timeout=WAIT).text
        # The token, by query, cookie or header, opens everything.
        assert httpx.get(served.base + "/api/domains", headers={"Authorization": f"token {served.token}"},
                         timeout=WAIT).json()[0]["name"] == "test"
        first = httpx.get(served.url, timeout=WAIT)
        assert first.status_code == 303 and "token" not in first.headers["location"]  # out of the address bar
        # A request naming another host (DNS rebinding) is refused even with the token.
        rebound = httpx.get(served.base + "/api/domains", headers={"Host": "evil.example:80",
                                                                   "Authorization": f"token {served.token}"})
        assert rebound.status_code == 403


def test_actions_need_origin_and_csrf():
    with serve_process("-c", "test:///default") as served:
        client, csrf = api_client(served)
        body = json.dumps({"action": "create", "domain": "test", "name": "x"})
        json_type = {"Content-Type": "application/json"}
        cases = {
            "no origin": {**json_type, "X-CSRF-Token": csrf},
            "other origin": {**json_type, "X-CSRF-Token": csrf, "Origin": "http://127.0.0.1:1"},
            "no csrf": {**json_type, "Origin": served.base},
            "wrong csrf": {**json_type, "Origin": served.base, "X-CSRF-Token": one_changed(csrf)},
        }
        for case, headers in cases.items():
            refused = client.post("/api/action", content=body, headers=headers)
            assert refused.status_code == 403, case
            assert "cross-site request refused" in refused.json()["error"], case
        assert snapshot_names(client) == []
        # The same request with both is taken: the refusals above were for what they lacked.
        good = {**json_type, "Origin": served.base, "X-CSRF-Token": csrf}
        ok = client.post("/api/action", content=body, headers=good)
        assert ok.status_code == 202
        job = ok.json()
        while job["state"] == "running":
            job = client.get("/api/job", params={"id": job["id"]}).json()
        assert job["state"] == "done" and snapshot_names(client) == ["x"]
        # Fields an action does not apply are refused by name, nothing done.
        extra = client.post("/api/action", headers={"Origin": served.base, "X-CSRF-Token": csrf},
                            json={"action": "create", "domain": "test", "name": "y", "memory": "no", "xml": "<a/>"})
        job = extra.json()
        while job["state"] == "running":
            job = client.get("/api/job", params={"id": job["id"]}).json()
        assert job["message"] == "invalid argument: unsupported fields: memory, xml" and job["code"] == 8
        assert snapshot_names(client) == ["x"]


class Attacker(http.server.BaseHTTPRequestHandler):
    """Another origin on this host: a page that posts a form to the victim server as soon as it loads."""

    target = ""

    def do_GET(self) -> None:
        page = (f"<form id=f method=post enctype=text/plain action='{self.target}/api/action'>"
                "<input name='{\"action\":\"create\",\"domain\":\"test\",\"name\":\"pwned\",\"x\":\"' value='\"}'>"
                "</form><script>document.getElementById('f').submit()</script>")
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(page.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_cross_site_post_from_a_browser_is_refused(browser):
    with serve_process("-c", "test:///default") as served:
        open_page(browser, served, "test")  # the browser now holds the token cookie, as a user's would
        Attacker.target = served.base
        evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        try:
            browser.get(f"http://127.0.0.1:{evil.server_address[1]}/")
            wait(browser, lambda d: d.current_url.startswith(served.base))
            assert "cross-site request refused" in browser.find_element(By.TAG_NAME, "body").text
        finally:
            evil.shutdown()
        client, _ = api_client(served)
        assert snapshot_names(client) == []


def test_readonly_offers_and_takes_no_action(browser):
    with serve_process("-c", "test:///default", "--readonly") as served:
        open_page(browser, served, "test")
        assert browser.find_element(By.ID, "mode").text == "read-only"
        assert browser.find_elements(By.CSS_SELECTOR, "button.action") == []
        assert browser.find_elements(By.ID, "new-snapshot") == []
        browser.find_element(By.CSS_SELECTOR, "#tree li.now").click()
        assert browser.find_elements(By.CSS_SELECTOR, "button.action") == []
        client, csrf = api_client(served)
        refused = client.post("/api/action", headers={"Origin": served.base, "X-CSRF-Token": csrf},
                              json={"action": "create", "domain": "test", "name": "x"})
        assert refused.status_code == 403 and refused.json()["error"] == "read-only server: no actions"
        assert snapshot_names(client) == []


def run_serve(*args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    script = f"{code}\nfrom virtsnap.cli.main import main\nraise SystemExit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT)


def test_refuses_non_loopback_and_bad_listen():
    for listen in ("0.0.0.0:0", "[::]:0", "example.org:8470"):
        out = run_serve("serve", "-c", "test:///default", "--listen", listen)
        assert out.returncode == 1 and out.stdout == ""
        assert out.stderr.startswith("error: refusing to listen on ") and "--allow-remote" in out.stderr
    out = run_serve("serve", "-c", "test:///default", "--listen", "8470")
    assert out.returncode == 1 and out.stderr == "error: invalid argument: --listen must be HOST:PORT, not '8470'\n"


def test_missing_extra_is_named():
    out = run_serve("serve", "-c", "test:///default", code="import sys\nsys.modules['uvicorn'] = None")
    assert out.returncode == 1
    assert out.stderr == ("error: virtsnap serve needs the 'web' extra: pip install 'virtsnap[web]' "
                          "(missing: uvicorn)\n")

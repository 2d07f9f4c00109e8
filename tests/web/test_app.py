"""Cross-cutting HTTP behaviour: security headers, error shape (docs/security.md, docs/api.md)."""

from __future__ import annotations

import httpx


async def test_security_headers_on_every_response(http: httpx.AsyncClient) -> None:
    for resp in (
        await http.get("/"),
        await http.get("/api/me"),
        await http.get("/api/nowhere"),
        await http.post("/api/session", json={}),
    ):
        csp = resp.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"] == "no-referrer"
        assert resp.headers["x-frame-options"] == "DENY"


async def test_unknown_api_route_is_json_404(http: httpx.AsyncClient) -> None:
    resp = await http.get("/api/nowhere")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


async def test_wrong_method_is_json_405(http: httpx.AsyncClient) -> None:
    resp = await http.put("/api/me")
    assert resp.status_code == 405
    assert resp.json()["error"]["code"] == "method_not_allowed"


async def test_frontend_is_served_at_root(http: httpx.AsyncClient) -> None:
    resp = await http.get("/")
    assert resp.status_code == 200
    assert "Téléimagerie" in resp.text


async def test_vendored_modules_are_revalidated_not_refetched(http: httpx.AsyncClient) -> None:
    first = await http.get("/vendor/cornerstone/cornerstone.js")
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-cache"
    assert first.headers["content-security-policy"].startswith("default-src 'self'")
    again = await http.get(
        "/vendor/cornerstone/cornerstone.js", headers={"if-none-match": first.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""
    # Everything else stays out of the browser's cache.
    assert (await http.get("/app.js")).headers["cache-control"] == "no-store"

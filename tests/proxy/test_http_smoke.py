import aiohttp

from tests.conftest import free_port


async def test_get_through_proxy(backend, run_pyngx):
    port = free_port()
    run_pyngx(f"""
http {{ server {{ listen 127.0.0.1:{port};
  location / {{ proxy_pass {backend.url}; proxy_set_header X-Real-IP $remote_addr; }} }} }}
""", port=port)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/a/b?x=1") as r:
            assert r.status == 200
            data = await r.json()
    assert data["path"] == "/a/b?x=1"
    assert backend.last.header("X-Real-IP") == "127.0.0.1"

"""Static files (root, alias, index, try_files, autoindex, types) against the real nginx.

The files and their mtimes are fixed (conftest.DOCROOT), so Last-Modified,
ETag and Content-Length must match byte for byte.
"""

from __future__ import annotations

import pytest

from tests.differential.harness import Req, conf, params, xfail

STATIC = conf(r"""
    types {
        text/html html;
        text/plain txt;
        text/css css;
        application/javascript js;
        application/json json;
    }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        root @ROOT@;
        index index.html;

        location / { }
        location /try/ { try_files $uri $uri/ /index.html; }
        location /try404/ { try_files $uri =404; }
        location /tryproxy/ { try_files $uri @back; }
        location @back { proxy_pass http://@BACKEND@; }
        location /alias/ { alias @ROOT@/dir/; }
        location ~ ^/re-alias/(.*)$ { alias @ROOT@/dir/$1; }
        location = /exact.txt { alias @ROOT@/a.txt; }
        location /listing/ { alias @ROOT@/; autoindex on; }
        location /typed/ { alias @ROOT@/; default_type text/x-default; types { } }
        location /err/ { error_page 404 /page404.html; }
    }
""")


def r(target: str, status: int = 200, **kw: object) -> Req:
    return Req(target, status=status, id=kw.pop("id", target), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("req", params(
    r("/", id="index"),
    r("/index.html"),
    r("/a.txt"),
    r("/style.css"),
    r("/app.js"),
    r("/data.json"),
    r("/noext", id="default-type"),
    r("/UPPER.TXT", id="extension-case"),
    r("/space%20name.txt", id="escaped-space"),
    r("/caf%C3%A9.txt", id="utf8-name"),
    r("/.hidden", id="dot-file"),
    r("/big.bin"),
    r("/missing", 404),
    r("/a.txt/", 404, id="file-with-slash"),
    r("/dir", 301, id="directory-redirect"),
    r("/dir?x=1", 301, id="directory-redirect-args"),
    r("/dir/", id="directory-index"),
    r("/dir/sub.txt"),
    r("/emptydir/", 403, id="directory-without-index"),
    r("/dir/../a.txt", id="dot-dot-inside-root"),
    Req("/a.txt", method="HEAD", status=200, id="head"),
    Req("/a.txt", method="POST", body=b"x", status=405, id="post-405"),
    Req("/a.txt", method="DELETE", status=405, id="delete-405"),
    Req("/big.bin", headers=(("Range", "bytes=0-9"),), status=206, id="range"),
    Req("/big.bin", headers=(("Range", "bytes=-10"),), status=206, id="suffix-range"),
    Req("/big.bin", headers=(("Range", "bytes=100-"),), status=206, id="open-range"),
    Req("/big.bin", headers=(("Range", "bytes=999999-"),), status=416, id="unsatisfiable-range"),
    Req("/big.bin", headers=(("Range", "bytes=0-1,5-6"),), status=206, id="multi-range"),
    Req("/big.bin", headers=(("Range", "lines=1-2"),), status=200, id="unknown-range-unit"),
    Req("/a.txt", headers=(("If-Modified-Since", "Tue, 14 Nov 2023 22:13:20 GMT"),), status=304,
        id="if-modified-since-equal"),
    Req("/a.txt", headers=(("If-Modified-Since", "Mon, 13 Nov 2023 22:13:20 GMT"),), status=200,
        id="if-modified-since-older"),
    Req("/a.txt", headers=(("If-None-Match", '"6553f100-6"'),), status=304, id="if-none-match"),
    Req("/a.txt", headers=(("If-None-Match", '"other"'),), status=200, id="if-none-match-other"),
    Req("/a.txt", headers=(("If-Match", '"other"'),), status=412, id="if-match-fails"),
    Req("/a.txt", headers=(("If-Unmodified-Since", "Mon, 13 Nov 2023 22:13:20 GMT"),), status=412,
        id="if-unmodified-since-fails"),
    r("/try/a.txt", id="try-files-looks-under-root-then-falls-back"),
    r("/try/missing", id="try-files-fallback"),
    r("/try404/missing", 404, id="try-files-code"),
    r("/tryproxy/missing?q=1", reached=True, id="try-files-named-location"),
    r("/alias/sub.txt", id="alias"),
    r("/alias/", id="alias-index"),
    r("/alias/missing", 404, id="alias-missing"),
    r("/re-alias/sub.txt", id="regex-alias"),
    r("/exact.txt", id="exact-alias"),
    r("/listing/", id="autoindex"),
    r("/listing/dir/", id="autoindex-sub-has-index"),
    r("/listing/emptydir/", id="autoindex-empty"),
    r("/typed/a.txt", id="empty-types"),
    r("/err/missing", 404, id="error-page-file"),
))
def test_static(differ, req):
    """Static files are served with nginx's status, fields and body."""
    differ(STATIC).check(req)

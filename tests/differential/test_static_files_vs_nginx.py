"""Static files against the real nginx, case by case: root, alias (prefix,
nested, regex with captures), index, try_files, autoindex in every format,
types, ranges, conditional requests, odd names, symbolic links; with the
access-log line of each request ($status, $body_bytes_sent, $uri, $args).

The document root is built here (``files``), with fixed mtimes, so that
Last-Modified, ETag, Content-Length, Content-Range, the autoindex listing
and multipart boundaries must match byte for byte. tests/differential/
test_static_vs_nginx.py has the first cases on the shared DOCROOT.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.differential.harness import Req, conf, params, xfail

MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z
OLDER = "Mon, 13 Nov 2023 22:13:20 GMT"
SAME = "Tue, 14 Nov 2023 22:13:20 GMT"
LATER = "Wed, 15 Nov 2023 22:13:20 GMT"

#: Files under the root (path -> content); "/" ends a directory.
FILES: dict[str, bytes] = {
    "a.txt": b"hello\n",
    "A.TXT": b"upper\n",
    "page.html": b"<p>page</p>\n",
    "style.css": b"p{}\n",
    "app.js": b"1;\n",
    "data.json": b"{}\n",
    "img.png": bytes(range(256)),
    "pic.svg": b"<svg/>\n",
    "arch.tar.gz": b"gz\n",
    "noext": b"no extension\n",
    "x.unknownext": b"unknown\n",
    ".hidden": b"hidden\n",
    "empty.txt": b"",
    "big.bin": bytes(range(256)) * 1200,  # 300 KiB: several reads
    "spa ce.txt": b"space\n",
    "per%cent.txt": b"percent\n",
    "hash#.txt": b"hash\n",
    "caf\u00e9.txt": b"utf-8\n",
    '<x>&"y".txt': b"html chars\n",
    "q?mark.txt": b"question\n",
    "!*'()~-_.txt": b"marks\n",
    "n" * 49 + ".t": b"49+2\n",
    "m" * 60 + ".txt": b"long\n",
    "\u00e9" * 30 + ".txt": b"long utf-8\n",
    "dir/index.html": b"<h1>dir</h1>\n",
    "dir/sub.txt": b"sub\n",
    "dir/deeper/x.txt": b"x\n",
    "dir2/index.htm": b"<h1>dir2 htm</h1>\n",
    "both/index.htm": b"htm\n",
    "both/index.html": b"html\n",
    "emptydir/": b"",
    "spa ce dir/index.html": b"spaced\n",
    'we#ird%dir "<>/': b"",
    "b\\^`{|}[]@$&+,;=:dir/": b"",
    "d" * 50 + "/": b"",
    "e" * 49 + "/": b"",
    "spa/index.html": b"<h1>spa shell</h1>\n",
    "spa/app.js": b"spa();\n",
    "special/f.txt": b"f\n",
}
#: Symbolic links (name -> target); nginx's default disable_symlinks off follows them.
LINKS = {"link.txt": "a.txt", "linkdir": "dir", "dangling": "nowhere", "outside.txt": "../outside/o.txt"}


@pytest.fixture(scope="module")
def files() -> Iterator[Path]:
    """The document root, world-readable (nginx's workers run as nobody), mtimes fixed."""
    top = Path(tempfile.mkdtemp(prefix="pyngx-static-"))
    root = top / "root"
    for rel, data in FILES.items():
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (top / "outside").mkdir()
    (top / "outside" / "o.txt").write_bytes(b"outside the root\n")
    for name, target in LINKS.items():
        (root / name).symlink_to(target)
    os.mkfifo(root / "special" / "fifo")
    for path in [*top.rglob("*"), top]:
        if path.is_symlink():
            os.utime(path, (MTIME, MTIME), follow_symlinks=False)
            continue
        path.chmod(0o755 if path.is_dir() else 0o644)
        os.utime(path, (MTIME, MTIME))
    yield root
    shutil.rmtree(top)


def config(root: Path) -> str:
    """The config both daemons serve: every case's location, on one server."""
    return conf(r"""
    include mime.types;
    default_type application/octet-stream;
    # Error pages' bytes differ by their signature line: logged for answers from files only.
    map $status $sent { ~^(200|206|304)$ $body_bytes_sent; default -; }
    log_format static '"$request"|$status|$sent|$uri';
    # try_files "" makes $uri empty, which nginx logs as "" and pyngx as "-".
    log_format tfre '"$request"|$status|$sent';
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        root @FILES@;
        access_log @LOG@ static;

        location / { }
        location = /echo { return 200 "uri=$uri args=$args\n"; }
        location /multi/ { alias @FILES@/; index nope.html index.htm index.html; }
        location /absidx/ { alias @FILES@/emptydir/; index nope.html /a.txt; }
        location /varidx/ { alias @FILES@/; index $arg_i; }
        location /al/ { alias @FILES@/dir/; }
        location /al2/ { alias @FILES@/dir; }
        location = /exact { alias @FILES@/a.txt; }
        location /nest/ { alias @FILES@/dir/; location /nest/deeper/ { } }
        location ~ ^/re/(.+)$ { alias @FILES@/dir/$1; }
        location ~ ^/red(/.*)?$ { alias @FILES@/dir$1; }
        location ~ ^/named/(?<tail>.+)$ { alias @FILES@/$tail; }
        location /spa/ { try_files $uri $uri/ /spa/index.html; }
        location /tf404/ { try_files $uri =404; }
        location /tf403/ { try_files $uri $uri/ =403; }
        location /tfnamed/ { try_files $uri @fallback; }
        location @fallback { return 200 "fallback uri=$uri args=$args\n"; }
        location /tfargs/ { try_files $uri /echo; }
        location /tfownargs/ { try_files $uri /echo?from=try_files; }
        location /tfdir/ { try_files $uri/ =404; }
        location /tfalias/ { alias @FILES@/dir/; try_files $uri $uri/ =404; }
        location /tfliteral/ { alias @FILES@/dir/; try_files /tfliteral/sub.txt =404; }
        location ~ ^/tfre/(.*)$ { alias @FILES@/dir/$1; try_files "" =404; access_log @LOG@ tfre; }
        location /auto/ { alias @FILES@/; autoindex on; }
        location /autos/ { alias @FILES@/; autoindex on; autoindex_exact_size off; }
        location /autoj/ { alias @FILES@/; autoindex on; autoindex_format json; }
        location /autojp/ { alias @FILES@/; autoindex on; autoindex_format jsonp; }
        location /autox/ { alias @FILES@/; autoindex on; autoindex_format xml; }
        location /autoidx/ { alias @FILES@/; autoindex on; index a.txt; }
        location /typed/ { alias @FILES@/; types { text/x-a txt; } default_type text/x-default; }
        location /notypes/ { alias @FILES@/; types { } }
        location /noetag/ { alias @FILES@/; etag off; }
        location /imsoff/ { alias @FILES@/; if_modified_since off; }
        location /imsbefore/ { alias @FILES@/; if_modified_since before; }
        location /maxr1/ { alias @FILES@/; max_ranges 1; }
        location /maxr0/ { alias @FILES@/; max_ranges 0; }
        location /errp/ { error_page 404 /dir/sub.txt; }
        location /errp200/ { error_page 404 =200 /dir/sub.txt; }
        location /errdir/ { error_page 404 /dir/; }
        location /rw/ { rewrite ^/rw/(.*)$ /dir/$1 break; }
        location /rwal/ { alias @FILES@/dir/; rewrite ^ /rwal/sub.txt break; }
        location /addh/ { alias @FILES@/; add_header X-Static yes; }
        location /sendfile/ { alias @FILES@/; sendfile on; }
        location /varroot/ { root @FILES@/$arg_d; }
        location /slashroot/ { root @FILES@/dir/; }
        location /ifroot/ { if ($arg_x) { root @FILES@/dir; } }
        location /varalias/ { alias @FILES@/$arg_d/; }
    }
""").replace("@FILES@", str(root))


def r(target: str, status: int = 200, id: str | None = None, **kw: object) -> Req:
    return Req(target, status=status, id=id or target, **kw)  # type: ignore[arg-type]


def h(target: str, status: int, id: str, *headers: tuple[str, str], method: str = "GET") -> Req:
    return Req(target, method=method, headers=headers, status=status, id=id)


ETAG = '"6553f100-6"'  # a.txt: mtime 0x6553f100, 6 bytes

CASES = params(
    # types by extension, default_type, names
    r("/a.txt"), r("/A.TXT", id="upper-case-extension"), r("/page.html"), r("/style.css"), r("/app.js"),
    r("/data.json"), r("/img.png"), r("/pic.svg"), r("/arch.tar.gz", id="last-extension"),
    r("/noext"), r("/x.unknownext", id="unknown-extension"), r("/.hidden", id="dot-file-no-extension"),
    r("/empty.txt", id="empty-file"), r("/big.bin", id="big-file-streamed"),
    r("/spa%20ce.txt", id="space"), r("/per%25cent.txt", id="percent"), r("/hash%23.txt", id="hash"),
    r("/caf%C3%A9.txt", id="utf8"), r("/%3Cx%3E&%22y%22.txt", id="html-chars"),
    r("/q%3Fmark.txt", id="question-mark"), r("/%61.txt", id="escaped-letter"),
    r("/dir/%2e%2e/a.txt", id="escaped-dot-dot"), r("/dir//sub.txt", id="double-slash"),
    r("/missing", 404), r("/a.txt/", 404, id="file-with-slash"), r("/nodir/", 404, id="missing-dir-slash"),
    r("/missing?x=1", 404, id="missing-args"),
    # directories
    r("/dir", 301, id="dir-redirect"), r("/dir?a=1&b=2", 301, id="dir-redirect-args"),
    r("/spa%20ce%20dir", 301, id="dir-redirect-escaped"), r("/spa%20ce%20dir/", id="dir-space-index"),
    r("/we%23ird%25dir%20%22%3C%3E", 301, id="dir-redirect-odd-name"),
    r("/b%5C%5E%60%7B%7C%7D[]@$&+,;=:dir", 301, id="dir-redirect-odd-name-2"),
    r("/dir/"), r("/dir/deeper/", 403, id="no-index-forbidden"), r("/emptydir/", 403),
    r("/dir2/", 403, id="only-index-htm"), r("/multi/dir2/", id="second-index-name"),
    r("/multi/both/", id="index-order"), r("/absidx/", id="absolute-index"),
    r("/varidx/?i=a.txt", id="variable-index"), r("/varidx/dir/?i=sub.txt", id="variable-index-sub"),
    # methods
    Req("/a.txt", method="HEAD", status=200, id="head"), Req("/big.bin", method="HEAD", status=200, id="head-big"),
    Req("/dir/", method="HEAD", status=200, id="head-index"), Req("/dir", method="HEAD", status=301, id="head-dir"),
    Req("/missing", method="HEAD", status=404, id="head-missing"),
    Req("/a.txt", method="POST", body=b"x=1", status=405, id="post-file"),
    Req("/missing", method="POST", body=b"x=1", status=404, id="post-missing"),
    Req("/dir", method="POST", body=b"x=1", status=301, id="post-dir"),
    Req("/dir/", method="POST", body=b"x=1", status=405, id="post-index"),
    Req("/emptydir/", method="POST", body=b"", status=403, id="post-no-index"),
    Req("/a.txt", method="PUT", body=b"x", status=405, id="put"),
    Req("/missing", method="DELETE", status=405, id="delete-missing"),
    Req("/dir/", method="OPTIONS", status=405, id="options-dir"),
    # alias
    r("/al/sub.txt", id="alias"), r("/al/", id="alias-index"), r("/al/deeper", 301, id="alias-dir-redirect"),
    r("/al2/sub.txt", 404, id="alias-without-slash"), r("/exact", id="exact-alias"),
    r("/nest/deeper/x.txt", id="nested-inherits-alias"),
    r("/re/sub.txt", id="regex-alias"), r("/re/deeper/x.txt", id="regex-alias-deeper"),
    r("/re/missing", 404, id="regex-alias-missing"),
    r("/red", 301, id="regex-alias-dir"), r("/red/", id="regex-alias-index"),
    r("/red/sub.txt", id="regex-alias-file"), r("/named/dir/sub.txt", id="regex-alias-named-capture"),
    # try_files
    r("/spa/app.js", id="spa-file"), r("/spa/route/deep", id="spa-fallback"),
    r("/spa/", id="spa-dir"), r("/spa", 301, id="spa-no-slash"),
    r("/tf404/missing", 404, id="try-files-404"), r("/tf403/missing", 403, id="try-files-403"),
    r("/tfnamed/missing?q=1", id="try-files-named"), r("/tfargs/missing?drop=1", id="try-files-drops-args"),
    r("/tfownargs/missing?drop=1", id="try-files-own-args"), r("/tfdir/", 404, id="try-files-dir-missing"),
    r("/tfalias/sub.txt", id="try-files-alias"), r("/tfalias/", id="try-files-alias-dir"),
    r("/tfalias/nope", 404, id="try-files-alias-missing"),
    r("/tfliteral/x", 404, id="try-files-alias-literal-name"),
    r("/tfre/sub.txt", id="try-files-regex-alias"), r("/tfre/", 404, id="try-files-regex-alias-dir"),
    # autoindex
    r("/auto/", id="autoindex"), r("/auto/dir/", id="autoindex-has-index"), r("/auto/emptydir/", id="autoindex-empty"),
    r("/auto/nodir/", 404, id="autoindex-missing"), r("/autos/", id="autoindex-rounded-sizes"),
    r("/autoj/", id="autoindex-json"), r("/autojp/?callback=cb", id="autoindex-jsonp"),
    r("/autojp/", id="autoindex-jsonp-without-callback"), r("/autojp/?callback=a-b", 400, id="autoindex-jsonp-bad"),
    r("/autox/", id="autoindex-xml"), r("/autoidx/", id="autoindex-after-index"),
    r("/auto/special/", id="autoindex-fifo"),
    Req("/auto/", method="POST", body=b"", status=403, id="autoindex-post"),
    xfail(Req("/auto/", method="HEAD", status=200, id="autoindex-head"),
          "HEAD of a listing (no Content-Length): Hypercorn's h11 writes the framing a GET would get, "
          "Transfer-Encoding: chunked; nginx writes neither field"),
    Req("/auto/emptydir/", version="HTTP/1.0", status=200, id="autoindex-http10"),
    Req("/big.bin", version="HTTP/1.0", status=200, id="file-http10"),
    # types, etag
    r("/typed/a.txt", id="types-block"), r("/typed/page.html", id="types-block-default"),
    r("/notypes/a.txt", id="empty-types"), r("/noetag/a.txt", id="etag-off"),
    r("/sendfile/a.txt", id="sendfile"),
    r("/varroot/sub.txt?d=dir", 404, id="root-with-variable-missing"),
    r("/varroot/x.txt?d=dir/deeper/..", 404, id="root-with-variable-args"),
    r("/slashroot/index.html", 404, id="root-trailing-slash"),
    r("/ifroot/?x=1", 404, id="root-in-if"),
    r("/varalias/sub.txt?d=dir", id="alias-with-variable"),
    r("/varalias/x.txt?d=dir/deeper", id="alias-with-variable-deeper"),
    r("/varalias/?d=dir", id="alias-with-variable-index"),
    # symbolic links, special files
    r("/link.txt", id="link"), r("/linkdir", 301, id="link-dir"), r("/linkdir/", id="link-dir-index"),
    r("/dangling", 404), r("/outside.txt", id="link-outside-root"), r("/special/fifo", 404, id="fifo"),
    # ranges
    h("/big.bin", 206, "range-first-byte", ("Range", "bytes=0-0")),
    h("/big.bin", 206, "range-last-byte", ("Range", "bytes=-1")),
    h("/big.bin", 206, "range-clipped", ("Range", "bytes=300000-999999")),
    h("/big.bin", 206, "range-spaces", ("Range", "bytes= 1 - 2")),
    h("/big.bin", 206, "range-upper-case-unit", ("Range", "BYTES=1-2")),
    h("/big.bin", 206, "range-multi-big", ("Range", "bytes=0-99999,200000-,-10")),
    h("/a.txt", 206, "range-overlap", ("Range", "bytes=0-1,0-1")),
    h("/a.txt", 200, "range-sum-over-size", ("Range", "bytes=0-4,1-5")),
    h("/big.bin", 416, "range-start-after-end", ("Range", "bytes=5-2")),
    h("/big.bin", 416, "range-garbage", ("Range", "bytes=abc")),
    h("/big.bin", 416, "range-trailing-comma", ("Range", "bytes=0-1,")),
    h("/big.bin", 416, "range-suffix-zero", ("Range", "bytes=-0")),
    h("/big.bin", 200, "range-too-short", ("Range", "bytes=")),
    h("/big.bin", 206, "range-one-of-two-usable", ("Range", "bytes=0-0,5-2")),
    h("/empty.txt", 200, "range-empty-file", ("Range", "bytes=0-")),
    h("/empty.txt", 200, "range-empty-file-suffix", ("Range", "bytes=-5")),
    h("/a.txt", 206, "if-range-etag", ("Range", "bytes=1-2"), ("If-Range", ETAG)),
    h("/a.txt", 200, "if-range-other-etag", ("Range", "bytes=1-2"), ("If-Range", '"x"')),
    h("/a.txt", 206, "if-range-date", ("Range", "bytes=1-2"), ("If-Range", SAME)),
    h("/a.txt", 200, "if-range-old-date", ("Range", "bytes=1-2"), ("If-Range", OLDER)),
    h("/maxr1/big.bin", 206, "max-ranges-1-one", ("Range", "bytes=0-1")),
    h("/maxr1/big.bin", 200, "max-ranges-1-two", ("Range", "bytes=0-1,3-4")),
    h("/maxr0/big.bin", 200, "max-ranges-0", ("Range", "bytes=0-1")),
    h("/big.bin", 206, "range-head", ("Range", "bytes=0-1,3-4"), method="HEAD"),
    h("/errp/x", 404, "range-error-page", ("Range", "bytes=0-1")),
    # conditional requests
    h("/a.txt", 304, "inm", ("If-None-Match", ETAG)),
    h("/a.txt", 304, "inm-list", ("If-None-Match", f'"a", {ETAG} ,"b"')),
    h("/a.txt", 304, "inm-weak", ("If-None-Match", f"W/{ETAG}")),
    h("/a.txt", 304, "inm-star", ("If-None-Match", "*")),
    h("/a.txt", 200, "inm-other", ("If-None-Match", '"6553f100-7"')),
    h("/a.txt", 304, "ims-same", ("If-Modified-Since", SAME)),
    h("/a.txt", 200, "ims-later-exact", ("If-Modified-Since", LATER)),
    h("/a.txt", 200, "ims-garbage", ("If-Modified-Since", "yesterday")),
    h("/a.txt", 304, "ims-rfc850", ("If-Modified-Since", "Tuesday, 14-Nov-23 22:13:20 GMT")),
    h("/a.txt", 304, "ims-asctime", ("If-Modified-Since", "Tue Nov 14 22:13:20 2023")),
    h("/imsbefore/a.txt", 304, "ims-later-before", ("If-Modified-Since", LATER)),
    h("/imsbefore/a.txt", 200, "ims-older-before", ("If-Modified-Since", OLDER)),
    h("/imsoff/a.txt", 200, "ims-off", ("If-Modified-Since", SAME)),
    h("/a.txt", 200, "ims-same-inm-other", ("If-Modified-Since", SAME), ("If-None-Match", '"x"')),
    h("/a.txt", 200, "ims-older-inm-same", ("If-Modified-Since", OLDER), ("If-None-Match", ETAG)),
    h("/a.txt", 200, "if-match", ("If-Match", ETAG)),
    h("/a.txt", 200, "if-match-star", ("If-Match", "*")),
    h("/a.txt", 412, "if-match-weak", ("If-Match", f"W/{ETAG}")),
    h("/a.txt", 412, "ius-garbage", ("If-Unmodified-Since", "soon")),
    h("/a.txt", 200, "ius-later", ("If-Unmodified-Since", LATER)),
    h("/noetag/a.txt", 200, "inm-etag-off", ("If-None-Match", ETAG)),
    h("/noetag/a.txt", 412, "if-match-etag-off", ("If-Match", ETAG)),
    h("/a.txt", 304, "inm-head", ("If-None-Match", ETAG), method="HEAD"),
    h("/big.bin", 304, "inm-beats-range", ("If-None-Match", '"6553f100-4b000"'), ("Range", "bytes=0-1")),
    # error_page, rewrite, add_header
    r("/errp/x", 404, id="error-page-file"), r("/errp200/x", id="error-page-file-200"),
    r("/errdir/x", 404, id="error-page-index"),
    r("/rw/sub.txt", id="rewrite-break-root"), r("/rwal/x", 500, id="rewrite-break-alias"),
    r("/addh/a.txt", id="add-header"), r("/addh/missing", 404, id="add-header-404"),
    h("/addh/a.txt", 304, "add-header-304", ("If-None-Match", ETAG)),
    h("/addh/big.bin", 206, "add-header-206", ("Range", "bytes=0-1")),
    r("/addh/dir", 301, id="add-header-301"),
)


@pytest.fixture(scope="module")
def static_conf(differ, files) -> str:
    """The config text. nginx reads "include mime.types" from its prefix, where
    the harness copies /etc/nginx/mime.types when it first starts nginx, after
    checking the first config: so a config without the include goes first.
    pyngx's directory has none: it reads the copy pyngx ships."""
    differ(conf("server { listen 127.0.0.1:@PORT@; location / { return 204; } }"))
    return config(files)


@pytest.mark.parametrize("req", CASES)
def test_static_files(differ, static_conf, req):
    """Each static-file request gets nginx's status, fields and body."""
    differ(static_conf).check(req)

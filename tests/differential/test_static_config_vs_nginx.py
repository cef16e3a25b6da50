"""Config checks of the static-file directives (root, alias, index,
try_files, autoindex, types, etag, ...) against ``nginx -t``: same text,
same verdict, same message, same line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.differential.harness import same_t_verdict

# (id, inside "server { }", inside "http { }" before the server)
CASES: list[tuple[str, str, str]] = [
    ("root-then-alias", "location / { root /a; alias /b; }", ""),
    ("alias-then-root", "location / { alias /b; root /a; }", ""),
    ("root-twice", "root /a; root /b;", ""),
    ("alias-twice", "location / { alias /a; alias /b; }", ""),
    ("alias-in-named", "location @x { alias /a; }", ""),
    ("alias-in-server", "alias /a;", ""),
    ("alias-in-if", "location / { if ($uri) { alias /a; } }", ""),
    ("root-in-if", "location / { if ($uri) { root /a; } }", ""),
    ("root-in-server-if", "if ($uri) { root /a; }", ""),
    ("root-document-root", "root $document_root/x;", ""),
    ("alias-realpath-root", "location / { alias ${realpath_root}/x; }", ""),
    ("root-unknown-variable", "root /a/$nothing;", ""),
    ("root-no-argument", "root;", ""),
    ("root-ok-forms", "root html; location / { root /srv/$host; } location ~ ^/(?<n>x)(.*) { alias /d/$n$2; }", ""),
    ("index-empty", 'index "";', ""),
    ("index-empty-second", 'index a "";', ""),
    ("index-ok-forms", "index a b /c; index d $uri.html; location / { index x; }", "index i.html;"),
    ("index-absolute-not-last", "index /a b;", ""),
    ("try-files-one-argument", "location / { try_files $uri; }", ""),
    ("try-files-bad-code", "location / { try_files $uri =abc; }", ""),
    ("try-files-code-1000", "location / { try_files $uri =1000; }", ""),
    ("try-files-in-http", "", "try_files $uri =404;"),
    ("try-files-in-if", "location / { if ($uri) { try_files $uri =404; } }", ""),
    ("try-files-twice", "location / { try_files a =404; try_files b =404; }", ""),
    ("try-files-ok-forms", "try_files $uri /x; location / { try_files $uri $uri/ /index.html; } "
     "location /a { try_files $uri =404; } location /b { try_files $uri @n; } location @n { }", ""),
    ("autoindex-bad-value", "autoindex yes;", ""),
    ("autoindex-format-bad", "autoindex_format csv;", ""),
    ("autoindex-ok-forms", "autoindex on; autoindex_format jsonp; autoindex_exact_size off; "
     "autoindex_localtime on;", ""),
    ("types-block-inside", "", "types { text/x a { } }"),
    ("types-with-argument", "", "types x { }"),
    ("types-without-block", "", "types;"),
    ("types-in-if", "location / { if ($uri) { types { } } }", ""),
    ("types-duplicate-extension", "", "types { text/a x; text/b X; }"),
    ("types-ok-forms", "location / { types { } } types { text/a a b; text/none; }",
     "types { text/x x; } types { text/y y; } types_hash_max_size 2048; types_hash_bucket_size 128;"),
    ("types-hash-garbage", "", "types_hash_max_size big;"),
    ("default-type-two", "default_type a b;", ""),
    ("etag-bad", "etag maybe;", ""),
    ("if-modified-since-bad", "if_modified_since sometimes;", ""),
    ("max-ranges-negative", "max_ranges -1;", ""),
    ("log-not-found-bad", "log_not_found 1;", ""),
    ("static-ok-forms", "etag off; if_modified_since before; max_ranges 0; log_not_found off; sendfile on; "
     "location / { if ($uri) { sendfile off; } }", ""),
]


@pytest.mark.parametrize(("server", "http"), [pytest.param(s, h, id=i) for i, s, h in CASES])
def test_same_verdict_as_nginx_t(tmp_path: Path, server: str, http: str) -> None:
    """pyngx -t accepts what nginx -t accepts, with its warnings, and refuses the rest with its message and line."""
    n, p = same_t_verdict(tmp_path, server, http)
    # pyngx does not warn about an absolute index name before the last one.
    assert p.warns == [w for w in n.warns if not w.startswith("only the last index")]

"""Config checks of the rewrite, map, access and realip directives (and
error_page, internal, if contexts) against ``nginx -t``: same text, same
verdict, same message, same line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.differential.harness import same_t_verdict

# (id, inside "server { }", inside "http { }" before the server)
CASES: list[tuple[str, str, str]] = [
    ("if-unknown-variable", "location / { if ($a = b) { } }", ""),
    ("error-page-in-server-if", "if ($uri) { error_page 404 /x; }", ""),
    ("if-in-if", "location / { if ($uri) { if ($uri) { } } }", ""),
    ("if-regex-missing", "location / { if ($uri ~ ) { } }", ""),
    ("if-unexpected-word", "location / { if ($uri foo bar) { } }", ""),
    ("if-unknown-file-test", "location / { if ( $uri -z /x) { } }", ""),
    ("if-file-test-alone", "location / { if (-f) { } }", ""),
    ("if-not-a-variable", "location / { if (uri) { } }", ""),
    ("if-without-parens", "location / { if $uri { } }", ""),
    ("if-equals-nothing", "location / { if ($uri = ) { } }", ""),
    ("if-without-block", "location / { if ($uri) return 200; }", ""),
    ("if-ok-forms", 'location / { if ($uri) { } if ( $uri != "" ) { } if ($uri ~* "^/(a|b){2}") { } '
     "if (!-e /x) { } if (-x $uri) { } }", ""),
    ("rewrite-bad-regex", "rewrite ^/(x /y;", ""),
    ("rewrite-bad-flag", "rewrite ^/x /y foo;", ""),
    ("rewrite-one-argument", "rewrite ^/x;", ""),
    ("rewrite-four-arguments", "rewrite ^ /x last break;", ""),
    ("rewrite-empty", 'rewrite ^ "";', ""),
    ("rewrite-unknown-variable", "rewrite ^ /$nothing;", ""),
    ("rewrite-in-http", "", "rewrite ^ /x;"),
    ("error-page-no-uri", "error_page 404;", ""),
    ("error-page-low-code", "error_page 99 /x;", ""),
    ("error-page-high-code", "error_page 600 /x;", ""),
    ("error-page-bad-overwrite", "error_page 404 =abc /x;", ""),
    ("error-page-499", "error_page 499 /x;", ""),
    ("error-page-equals-in-middle", "error_page 404 = /x =200;", ""),
    ("error-page-equals-first", "error_page =200 /x;", ""),
    ("error-page-ok-forms", "error_page 404 =200 /x; error_page 500 502 = @n; error_page 403 http://x/$uri; "
     "location @n { }", ""),
    ("allow-bad-mask", "allow 1.2.3.4/33;", ""),
    ("allow-garbage", "allow foo;", ""),
    ("deny-ok-forms", "deny 10.0.0.0/8; deny ::1; deny 2001:db8::/32; deny unix:; allow all;", ""),
    ("realip-unresolvable", "set_real_ip_from foo.invalid;", ""),
    ("realip-recursive-value", "set_real_ip_from 1.2.3.0/24; real_ip_recursive maybe;", ""),
    ("set-no-dollar", "set x 1;", ""),
    ("set-one-argument", "set $x;", ""),
    ("set-builtin", "set $host x;", ""),
    ("set-args-allowed", "set $args a=1;", ""),
    ("map-three-words", "", "map $uri $x { a b c; }"),
    ("map-one-word", "", "map $uri $x { a; }"),
    ("map-two-defaults", "", "map $uri $x { default a; default b; }"),
    ("map-no-dollar", "", "map $uri x { }"),
    ("map-conflict", "", "map $uri $x { a b; a c; }"),
    ("map-conflict-caseless", "", "map $uri $x { A 1; a 2; }"),
    ("map-bad-regex", "", "map $uri $x { ~(x y; }"),
    ("map-bad-wildcard", "", "map $uri $x { hostnames; *.a.* b; }"),
    ("map-bad-wildcard-middle", "", "map $uri $x { hostnames; a*b c; }"),
    ("map-wildcard-conflict", "", "map $uri $x { hostnames; .a.com 1; *.a.com 2; }"),
    ("map-unknown-variable", "", "map $uri $x { a $undefined; }"),
    ("map-builtin", "", "map $uri $uri { }"),
    ("map-in-server", "map $uri $x { }", ""),
    ("map-missing-include", "", "map $uri $x { include nothere.conf; }"),
    ("map-hash-sizes", "", "map_hash_max_size 4096; map_hash_bucket_size 128;"),
    ("map-hash-size-garbage", "", "map_hash_max_size x;"),
    ("map-ok-forms", "return 200 $x$y;", 'map $uri $x { hostnames; volatile; default 0; "" 1; \\default 2; '
     "~^/a(?<n>.*) $n; ~*B $1; *.x.com 3; www.x.* 4; .y.com 5; } map $x$uri $y { }"),
    ("internal-twice", "location / { internal; internal; }", ""),
    ("internal-in-server", "internal;", ""),
    ("break-argument", "break x;", ""),
    ("proxy-pass-in-server-if", "if ($uri) { proxy_pass http://127.0.0.1; }", ""),
    ("proxy-set-header-in-if", "location / { if ($uri) { proxy_set_header A b; } }", ""),
    ("internal-in-if", "location / { if ($uri) { internal; } }", ""),
    ("allow-in-if", "location / { if ($uri) { allow all; } }", ""),
    ("realip-in-if", "location / { if ($uri) { set_real_ip_from 1.2.3.4; } }", ""),
    ("recursive-in-if", "location / { if ($uri) { recursive_error_pages on; } }", ""),
    ("proxy-pass-uri-in-if", "location / { if ($uri) { proxy_pass http://127.0.0.1/x; } }", ""),
    ("if-location-ok", "location / { if ($uri) { proxy_pass http://127.0.0.1; access_log off; error_page 404 /x; "
     "rewrite_log on; set $a 1; return 200; rewrite ^ /x; break; } }", ""),
    ("server-if-ok", "if ($uri) { rewrite_log on; uninitialized_variable_warn off; set $a 1; rewrite ^ /x; "
     "return 200; break; }", ""),
    ("named-nested", "location /a { location @x { } }", ""),
    ("set-after-use", "return 200 $later; set $later 1;", ""),
    ("capture-variable-anywhere", "location ~ (?<foo>x) { } return 200 $foo;", ""),
    ("return-444-text", "return 444 x;", ""),
    ("zero-capture", "return 200 $0;", ""),
]


@pytest.mark.parametrize(("server", "http"), [pytest.param(s, h, id=i) for i, s, h in CASES])
def test_same_verdict_as_nginx_t(tmp_path: Path, server: str, http: str) -> None:
    """pyngx -t accepts what nginx -t accepts, and refuses the rest with nginx's message and line."""
    same_t_verdict(tmp_path, server, http)

"""The rewrite module, map, error_page, named and internal locations, allow/deny
and realip against the real nginx: same config text, same requests; status,
fields, body and what the backend saw must match.
"""

from __future__ import annotations

import pytest

from tests.differential.harness import Req, conf, params


def r(target: str, status: int, reached: bool = False, **kw: object) -> Req:
    return Req(target, status=status, reached=reached, id=kw.pop("id", target), **kw)  # type: ignore[arg-type]


# --- rewrite ------------------------------------------------------------------------

REWRITE = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        rewrite ^/srv/(.*)$ /a/$1;
        rewrite ^/srvlast/(.*)$ /a/$1 last;
        rewrite ^/srvbreak/(.*)$ /a/$1 break;
        location /a { return 200 "a uri=$uri args=$args 1=$1\n"; }
        location /last { rewrite ^/last/(.*)$ /a/$1 last; return 200 "not reached\n"; }
        location /cont { rewrite ^/cont/(.*)$ /a/$1; return 200 "cont uri=$uri\n"; }
        location /chain { rewrite ^/chain/(.*)$ /chain2/$1; rewrite ^/chain2/(.*)$ /a/$1-2; }
        location /noargs { rewrite ^/noargs/(.*)$ /a/$1? last; }
        location /args { rewrite ^/args/(.*)$ /a/$1?x=$1 last; }
        location /argsonly { rewrite ^ /a?only=1? last; }
        location /abs { rewrite ^/abs/(.*)$ http://example.com/$1; }
        location /abs-noargs { rewrite ^/abs-noargs/(.*)$ https://example.com/$1?; }
        location /abs-q { rewrite ^/abs-q/(.*)$ http://example.com/?v=$1; }
        location /abs-lit { rewrite ^/abs-lit/(.*)$ http://example.com/$1%41%25; }
        location /perm { rewrite ^/perm/(.*)$ /a/$1 permanent; }
        location /redir { rewrite ^/redir/(.*)$ /a/$1 redirect; }
        location /abs-last { rewrite ^ http://example.com/l last; }
        location /loop { rewrite ^/loop/(.*)$ /loop/$1 last; }
        location /named { rewrite ^/named/(?<n>.*)$ http://example.com/$n?; }
        location /scheme { rewrite ^ $scheme://example.com/s?y=1 permanent; }
        location /brk { rewrite ^/brk(.*)$ /up$1 break; proxy_pass http://@BACKEND@/ignored/; }
        location /brk2 { rewrite ^/brk2(.*)$ /up$1?q=1 break; proxy_pass http://@BACKEND@; }
        location /toproxy { rewrite ^/toproxy/(.*)$ /proxied/$1 last; }
        location /proxied { proxy_pass http://@BACKEND@; }
        location /proxied-uri/ { proxy_pass http://@BACKEND@/base/; }
        location /touri { rewrite ^/touri/(.*)$ /proxied-uri/$1 last; }
        location /nomatch { rewrite ^/zzz /a; return 200 "no match uri=$uri\n"; }
        location /esc { rewrite ^/esc/(.*)$ /a?v=$1 last; }
        location /setargs { set $args foo=1; proxy_pass http://@BACKEND@; }
        location /setargs-uri/ { set $args foo=1; proxy_pass http://@BACKEND@/base/; }
        location ~ ^/re/(?<x>[a-z]+)/(\d+) { rewrite ^ /a/$x/$2 last; }
        location /logged { rewrite_log on; rewrite ^/logged/(.*)$ /a/$1 last; }
        location /empty { rewrite ^.*$ $arg_none last; }
        location ~ ^/capp/(?<name>[a-z]+)/(.*)$ { proxy_pass http://@BACKEND@/x/$name/$2; }
        location ~ ^/capr/(.*)$ { rewrite ^ /a/$1 last; }
        location = /n0 { rewrite ^ /n1 last; }
        location = /n1 { rewrite ^ /n2 last; }
        location = /n2 { rewrite ^ /n3 last; }
        location = /n3 { rewrite ^ /n4 last; }
        location = /n4 { rewrite ^ /n5 last; }
        location = /n5 { rewrite ^ /n6 last; }
        location = /n6 { rewrite ^ /n7 last; }
        location = /n7 { rewrite ^ /n8 last; }
        location = /n8 { rewrite ^ /n9 last; }
        location = /n9 { rewrite ^ /n10 last; }
        location = /n10 { return 200 "ten rewrites\n"; }
        location = /nx { rewrite ^ /n0 last; }
    }
""")

SPECIALS = "/%20%23%25%26%2B%3B%3F%22%27%3C%3E%5C%5E%60%7B%7C%7D%7E!*()=:@,$/%C3%A9"


@pytest.mark.parametrize("req", params(
    r("/srv/x?q=1", 200, id="server-level-rewrite"),
    r("/srvlast/y?q=1", 200, id="server-level-last"),
    r("/srvbreak/y", 200, id="server-level-break"),
    r("/last/x?q=1", 200, id="last-finds-location-again"),
    r("/cont/x?q=1", 200, id="no-flag-goes-on"),
    r("/chain/x", 200, id="two-rewrites-in-a-row"),
    r("/noargs/x?q=1", 200, id="trailing-question-mark-drops-args"),
    r("/args/x?q=1", 200, id="new-args-then-old"),
    r("/argsonly?q=1", 200, id="args-and-trailing-question-mark"),
    r("/abs/x?q=1", 302, id="absolute-url-is-302"),
    r("/abs/a%20b+c?q=1", 302, id="redirect-escapes-captures"),
    r("/abs" + SPECIALS + "?q=1", 302, id="redirect-escaping-set"),
    r("/abs-noargs/x?q=1", 302, id="https-without-args"),
    r("/abs-q/a%20b&c?q=1", 302, id="redirect-capture-in-args"),
    r("/abs-lit/x", 302, id="redirect-unescapes-literal"),
    r("/perm/x?q=1", 301, id="permanent"),
    r("/redir/x", 302, id="redirect"),
    r("/abs-last", 302, id="absolute-with-last-still-redirects"),
    r("/loop/x", 500, id="rewrite-cycle-500"),
    r("/named/x%20y?q=1", 302, id="named-capture-not-escaped"),
    r("/scheme?q=2", 301, id="scheme-redirect-appends-args"),
    r("/brk/p%20q?z=1", 200, True, id="break-keeps-location-uri-part-ignored"),
    r("/brk2/p", 200, True, id="break-with-args"),
    r("/toproxy/a%20b?z=1", 200, True, id="rewritten-uri-escaped-upstream"),
    r("/touri/x?z=1", 200, True, id="rewritten-into-uri-part-location"),
    r("/nomatch?q=1", 200, id="no-match"),
    r("/esc/a+b", 200, id="capture-in-args-escaped-for-plus"),
    r("/esc/a%20b", 200, id="capture-in-args-escaped-for-quoted"),
    r("/esc/ab", 200, id="capture-in-args-plain"),
    r("/setargs/a%20b?z=1", 200, True, id="set-args-rebuilds-target"),
    r("/setargs-uri/x?z=1", 200, True, id="set-args-uri-part"),
    r("/re/abc/42", 200, id="regex-location-named-capture-survives"),
    r("/logged/x", 200, id="rewrite-log"),
    r("/empty", 500, id="zero-length-uri"),
    r("/capp/abc/de?q=1", 200, True, id="location-captures-in-proxy-pass"),
    r("/capr/zz", 200, id="location-capture-lost-to-rewrite-regex"),
    r("/n0", 200, id="ten-rewrites-are-allowed"),
    r("/nx", 500, id="eleven-rewrites-are-a-cycle"),
    Req("/perm/x", method="HEAD", status=301, reached=False, id="head-redirect"),
    Req("/toproxy/x", method="POST", body=b"abc", status=200, reached=True, id="post-after-rewrite"),
))
def test_rewrite(differ, req):
    """rewrite's flags, args and escaping give nginx's answers and upstream requests."""
    differ(REWRITE).check(req)


# --- return ---------------------------------------------------------------------------

RETURNS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /close { return 444; }
        location /close-text { return 444 "never sent"; }
        location /r200-empty { return 200; }
        location /r204 { return 204; }
        location /r204-text { return 204 "dropped"; }
        location /r300-bare { return 300; }
        location /r301-bare { return 301; }
        location /r304 { return 304; }
        location /order { set $a 1; return 200 "a=$a"; set $a 2; }
        location ~ ^/cap/(?<name>\w+)/(\d+) { return 302 http://example.com/$name/$2; }
        location /cap-text { rewrite ^/cap-text/(.*) /x; return 200 "$1"; }
    }
    server {
        listen 127.0.0.1:@PORT2@;
        server_name localhost;
        return 444;
    }
""")


@pytest.mark.parametrize("req", params(
    r("/close", 0, id="444-closes"),
    r("/close-text", 444, id="444-with-text-answers"),
    Req("/close", method="POST", body=b"abc", status=0, reached=False, id="444-post"),
    r("/x", 0, port=2, id="server-level-444"),
    r("/r200-empty", 200, id="return-200-empty-has-default-type"),
    r("/r204", 204, id="return-204-no-fields"),
    r("/r204-text", 204, id="return-204-text-dropped"),
    r("/r300-bare", 300),
    r("/r301-bare", 301, id="return-301-empty-location"),
    r("/r304", 304),
    r("/order", 200, id="return-stops-the-script"),
    r("/cap/abc/7", 302, id="regex-captures-in-return"),
    r("/cap-text/zz", 200, id="rewrite-capture-in-return"),
))
def test_return(differ, req):
    """return 444 closes the connection unanswered; the other forms answer as nginx."""
    differ(RETURNS).check(req)


# --- if, set, break ---------------------------------------------------------------------

IFS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        if ($arg_srv = stop) { return 403; }
        if ($http_x_srv) { rewrite ^ /a/from-server-if last; }
        set $late_srv $arg_v;
        location /a { return 200 "a uri=$uri late=$late_srv\n"; }
        location / {
            proxy_pass http://@BACKEND@;
            if ($arg_b = x) { return 200 "b=x\n"; }
            if ($arg_b != x) { set $notx yes; }
            if ($arg_c ~* ^(A)(?<rest>.*)) { return 200 "c 1=$1 rest=$rest\n"; }
            if ($arg_d !~ ^y) { set $dd not-y; }
            if ($arg_d !~* ^Y) { set $dd2 not-Y; }
            if ($arg_eq = "") { set $empty yes; }
            if (-d /tmp) { set $isdir yes; }
            if (!-d /nonexistent) { set $notdir yes; }
            if (-f /etc/passwd) { set $isfile yes; }
            if (!-f /tmp) { set $notfile yes; }
            if (-e /tmp) { set $exists yes; }
            if (!-e /nonexistent) { set $notexists yes; }
            if (-x /bin/sh) { set $exec yes; }
            if (!-x /etc/passwd) { set $notexec yes; }
            if ( $arg_spaced ) { set $spaced yes; }
            if ($arg_e) { break; }
            return 200 "end notx=$notx dd=$dd dd2=$dd2 empty=$empty isdir=$isdir notdir=$notdir isfile=$isfile notfile=$notfile exists=$exists notexists=$notexists exec=$exec notexec=$notexec spaced=$spaced rest=$rest\n";
        }
        location /ifproxy/ { proxy_pass http://@BACKEND@/base/; set $t 1; if ($t) { set $u 2; } }
        location /ifpp { if ($arg_up) { proxy_pass http://@BACKEND@; break; } return 200 "no if\n"; }
        location /iferr { error_page 404 =200 /a; if ($arg_x) { error_page 404 =201 /a; } return 404; }
        location /ifhdr { proxy_set_header X-Seen "seen-$arg_h"; proxy_set_header Connection ""; if ($arg_h) { proxy_pass http://@BACKEND@; } proxy_pass http://@BACKEND@; }
        location /set-order { return 200 "v=$declared_later"; }
        location /set-vars { set $one "$uri-$arg_q"; set $two "[$one]"; return 200 "$two"; }
        location /set-case { set $MiXed abc; return 200 "$mixed"; }
        location /uninit { return 200 "u=[$never_set]"; }
        location /never { set $declared_later x; set $never_set x; }
        location /last-in-if { if ($arg_go) { rewrite ^ /a/from-if last; } return 200 "stayed\n"; }
    }
""")


@pytest.mark.parametrize("req", params(
    r("/p?b=x", 200, id="equal"),
    r("/p?c=abc", 200, id="regex-caseless-captures"),
    r("/p?d=zzz&eq=1", 200, id="negated-regexes-and-file-tests"),
    r("/p?d=y&c=zz", 200, id="negated-regex-false"),
    r("/p?d=Y", 200, id="negated-caseless"),
    r("/p?spaced=1", 200, id="condition-with-spaces"),
    r("/p?spaced=0", 200, id="zero-is-false"),
    r("/p?e=1", 200, True, id="break-in-if-goes-to-content"),
    r("/p?srv=stop", 403, id="server-if-return"),
    Req("/p", headers=(("X-Srv", "1"),), status=200, reached=False, id="server-if-rewrite"),
    r("/a?v=7", 200, id="server-set"),
    r("/ifproxy/x?y=1", 200, True, id="if-location-keeps-uri-part"),
    r("/ifpp?up=1", 200, True, id="proxy-pass-in-if"),
    r("/ifpp", 200, id="if-false"),
    r("/iferr", 200, id="error-page-of-location"),
    r("/iferr?x=1", 201, id="error-page-of-if-block"),
    r("/ifhdr?h=1", 200, True, id="if-location-inherits-headers"),
    r("/set-order", 200, id="set-declared-later-in-file"),
    r("/set-vars?q=1", 200, id="set-with-variables"),
    r("/set-case", 200, id="variable-names-are-caseless"),
    r("/uninit", 200, id="uninitialized-is-empty"),
    r("/last-in-if?go=1", 200, id="last-in-if"),
    r("/last-in-if", 200, id="last-in-if-false"),
    r("/p?e=1&b=x", 200, id="earlier-return-wins"),
))
def test_if_set_break(differ, req):
    """if conditions, set and break behave as in nginx (if-location conf included)."""
    differ(IFS).check(req)


# --- map ------------------------------------------------------------------------------------

MAPS = conf(r"""
    map $arg_x $m1 {
        default dflt;
        foo FOO;
        Bar BAR;
        ~^re(?<tail>.*)$ "re:$tail";
        ~*^CI(.*)$ "ci:$1";
        "" empty;
        \default escaped;
        var $arg_y;
    }
    map $http_host $m2 {
        hostnames;
        default none;
        .example.com dotex;
        *.foo.com starfoo;
        www.bar.* barstar;
        www.example.com exact;
    }
    map $http_upgrade $connection_upgrade {
        default upgrade;
        '' close;
    }
    map $arg_y$arg_z $m3 {
        ab AB;
        default "v-$arg_y";
    }
    map $uri $m4 {
        volatile;
        ~^/vol/(\d+) $1;
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location / { return 200 "m1=$m1 m2=$m2 m3=$m3 cu=$connection_upgrade 1=$1\n"; }
        location /ws { proxy_pass http://@BACKEND@; proxy_set_header Connection $connection_upgrade; proxy_set_header Upgrade $http_upgrade; }
        location /vol/ { return 200 "m4=$m4"; }
        location /set-wins { set $m1 setvalue; return 200 "m1=$m1"; }
    }
""")


def m(target: str, host: str = "localhost", **kw: object) -> Req:
    return Req(target, host=host, status=200, reached=False, id=kw.pop("id", f"{target} {host}"), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("req", params(
    m("/?x=foo"), m("/?x=FOO", id="caseless-key"), m("/?x=bar", id="key-written-in-capitals"),
    m("/?x=rexyz", id="regex-named-capture"), m("/?x=cIab", id="caseless-regex-capture"),
    m("/", id="empty-key"), m("/?x=default", id="escaped-default"), m("/?x=other", id="default"),
    m("/?x=var&y=7", id="value-with-variable"),
    m("/?y=a&z=b", host="example.com.", id="hostnames-trailing-dot"),
    m("/?y=q", host="a.b.example.com", id="dot-wildcard-subdomain"),
    m("/", host="x.foo.com", id="star-wildcard"),
    m("/", host="foo.com", id="star-wildcard-not-bare"),
    m("/", host="www.bar.org", id="tail-wildcard"),
    m("/", host="WWW.Example.com", id="exact-hostname-caseless"),
    Req("/", headers=(("Upgrade", "websocket"),), status=200, reached=False, id="connection-upgrade-idiom"),
    Req("/ws/x", headers=(("Upgrade", "foo"),), status=200, reached=True, id="connection-upgrade-upstream"),
    Req("/ws/x", status=200, reached=True, id="connection-close-upstream"),
    m("/vol/12", id="volatile-regex-value"),
    m("/set-wins?x=foo", id="set-overrides-map"),
))
def test_map(differ, req):
    """map: exact, hostnames wildcards, regexes with captures, default, in nginx's order."""
    differ(MAPS).check(req)


# --- error_page, named and internal locations ------------------------------------------------

ERROR_PAGES = conf(r"""
    error_page 502 /http-502;
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        error_page 404 /err;
        location /http-502 { return 200 "http-level 502 page\n"; }
        location /err { return 200 "err uri=$uri args=$args method=$request_method request=$request\n"; }
        location /a { return 404; }
        location /b { return 404 "custom"; }
        location /c { error_page 404 =200 /up; return 404; }
        location /up { proxy_pass http://@BACKEND@; }
        location /d { error_page 404 = /up; return 404; }
        location /e { error_page 404 http://example.com/x; return 404; }
        location /f { error_page 404 =301 http://example.com/y; return 404; }
        location /f2 { error_page 404 =404 http://example.com/y; return 404; }
        location /g { error_page 404 /missing; return 404; }
        location /h { error_page 403 /err; return 404; }
        location /l { error_page 302 /err; return 302 /x; }
        location /m { error_page 404 /err?a=1; return 404; }
        location /n { error_page 404 @named; return 404; }
        location /o { error_page 404 = @named; return 404; }
        location /o2 { error_page 404 =202 @named; return 404; }
        location @named { return 200 "named uri=$uri method=$request_method\n"; }
        location @nproxy { proxy_pass http://@BACKEND@; }
        location /p { error_page 404 @nproxy; return 404; }
        location /int { internal; return 200 "internal\n"; }
        location /q { error_page 404 /int; return 404; }
        location /toint { rewrite ^ /int last; }
        location /nr { error_page 404 @nr; return 404; }
        location @nr { rewrite ^ /err last; }
        location /dead { proxy_pass http://@DEAD@; }
        location /dead2 { error_page 502 =503 /err; proxy_pass http://@DEAD@; }
        location /dead3 { error_page 502 = /up; proxy_pass http://@DEAD@; }
        location /rec { recursive_error_pages on; error_page 404 /rec2; return 404; }
        location /rec2 { error_page 404 /err; return 404; }
        location /norec { error_page 404 /norec2; return 404; }
        location /norec2 { error_page 404 /err; return 404; }
        location /var { error_page 404 /err?from=$uri; return 404; }
        location /multi { error_page 403 404 =410 /err; return 403; }
        location /deny { error_page 403 /err; deny all; proxy_pass http://@BACKEND@; }
        location /cycle { error_page 404 /cycle2; return 404; }
        location /cycle2 { recursive_error_pages on; error_page 404 /cycle2; return 404; }
        location /cycle3 { recursive_error_pages on; error_page 404 /cycle3; return 404; }
        location /nested { error_page 404 =200 /err; location /nested/inner { return 404; } }
        location /nested2 { error_page 404 =200 /err; location /nested2/inner { error_page 500 /err; return 404; } }
        location /internal-nested { internal; location /internal-nested/x { return 200 "x"; } }
        location /dot/ { proxy_pass http://@BACKEND@/; error_page 301 =200 /err; }
    }
""")


@pytest.mark.parametrize("req", params(
    r("/a?q=1", 404, id="uri-keeps-status"),
    Req("/a", method="POST", body=b"xyz", status=404, reached=False, id="post-becomes-get"),
    Req("/a", method="HEAD", status=404, reached=False, id="head-stays-head"),
    r("/b", 404, id="return-with-text-is-no-error-page"),
    Req("/c", method="POST", body=b"xyz", status=200, reached=True, id="overwrite-status-proxied-get-with-body"),
    r("/d", 200, True, id="equals-keeps-redirect-status"),
    r("/e", 302, id="url-302"),
    r("/f", 301, id="url-with-301"),
    r("/f2", 302, id="url-with-non-redirect-code-302"),
    r("/g", 404, id="missing-target-404-page"),
    r("/h", 404, id="other-code"),
    r("/l", 302, id="error-page-for-redirect-keeps-location"),
    r("/m?z=2", 404, id="uri-with-args"),
    r("/n", 404, id="named-location"),
    r("/o", 200, id="named-equals"),
    r("/o2", 202, id="named-overwrite"),
    r("/p/x%20y?z=1", 404, True, id="named-proxy-keeps-uri"),
    r("/int", 404, id="internal-from-outside"),
    r("/q", 404, id="internal-from-error-page"),
    r("/toint", 200, id="internal-after-rewrite"),
    r("/nr?a=b", 404, id="named-location-rewrites-last"),
    r("/dead", 502, id="proxy-502-http-level-error-page"),
    r("/dead2", 503, id="proxy-502-overwritten"),
    Req("/dead3", method="POST", body=b"hello-body", status=200, reached=True, id="body-read-again-after-502"),
    Req("/dead3", method="POST", body=b"0123456789abcdef" * 12800, status=200, reached=True,
        id="big-body-read-again-after-502"),
    r("/rec", 404, id="recursive-error-pages"),
    r("/norec", 404, id="not-recursive"),
    r("/var", 404, id="target-with-variables"),
    r("/multi", 410, id="several-codes"),
    r("/deny", 403, id="access-forbidden"),
    r("/cycle", 404, id="error-page-done-stays-done"),
    r("/cycle3", 500, id="error-page-cycle"),
    r("/nested/inner", 200, id="inherited-by-nested"),
    r("/nested2/inner", 404, id="inner-level-replaces"),
    r("/internal-nested/x", 404, id="internal-inherited"),
    r("/dot", 200, id="auto-redirect-error-page"),
))
def test_error_page(differ, req):
    """error_page: internal redirects, =codes, URLs, named locations, inheritance, recursion."""
    differ(ERROR_PAGES).check(req)


# --- allow / deny, realip -------------------------------------------------------------------------

ACCESS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        allow 127.0.0.0/8;
        deny all;
        location /a { deny 127.0.0.2; allow 127.0.0.0/8; deny all; proxy_pass http://@BACKEND@; }
        location /b { deny all; return 200 "return runs before access\n"; }
        location /b2 { allow ::1; deny all; proxy_pass http://@BACKEND@; }
        location /b3 { deny 127.0.0.1/32; proxy_pass http://@BACKEND@; }
        location /b4 { allow unix:; deny all; proxy_pass http://@BACKEND@; }
        location /inherit { proxy_pass http://@BACKEND@; }
        location /r { set_real_ip_from 127.0.0.1; set_real_ip_from 10.0.0.0/8; set_real_ip_from ::1;
                      real_ip_header X-Forwarded-For; real_ip_recursive on; proxy_pass http://@BACKEND@; allow all;
                      proxy_set_header Connection ""; proxy_set_header X-A "$remote_addr|$realip_remote_addr|$remote_port"; }
        location /s { set_real_ip_from 127.0.0.1; proxy_pass http://@BACKEND@; allow all;
                      proxy_set_header Connection ""; proxy_set_header X-A "$remote_addr|$remote_port"; }
        location /t { set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For; proxy_pass http://@BACKEND@; allow all;
                      proxy_set_header Connection ""; proxy_set_header X-A $remote_addr; }
        location /u { set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For; deny 1.2.3.4;
                      proxy_pass http://@BACKEND@; }
        location /v { set_real_ip_from 127.0.0.1; real_ip_header X-My; proxy_pass http://@BACKEND@; allow all;
                      proxy_set_header Connection ""; proxy_set_header X-A $remote_addr; }
        location /s0 { set_real_ip_from 127.0.0.1; proxy_pass http://@BACKEND@; allow all;
                       proxy_set_header Connection ""; proxy_set_header X-A $remote_addr; }
        location /w { set_real_ip_from 10.0.0.0/8; proxy_pass http://@BACKEND@; proxy_set_header X-A $remote_addr;
                      proxy_set_header Connection ""; }
    }
    server {
        listen 127.0.0.1:@PORT2@;
        server_name localhost;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        location / { return 200 "server-level realip=$remote_addr\n"; }
        location /deny { deny 5.5.5.5; proxy_pass http://@BACKEND@; }
    }
""")


def x(target: str, status: int, reached: bool, headers: tuple[tuple[str, str], ...] = (), **kw: object) -> Req:
    return Req(target, headers=headers, status=status, reached=reached, id=kw.pop("id", target), **kw)  # type: ignore[arg-type]


XFF = "X-Forwarded-For"


@pytest.mark.parametrize("req", params(
    x("/a", 200, True, id="allow-cidr"),
    x("/b", 200, False, id="return-before-access"),
    x("/b2", 403, False, id="ipv6-rule-does-not-match-ipv4"),
    x("/b3", 403, False, id="deny-address"),
    x("/b4", 403, False, id="unix-rule"),
    x("/inherit", 200, True, id="server-rules-inherited"),
    x("/r", 200, True, ((XFF, "1.1.1.1, 2.2.2.2, 10.1.1.1"),), id="recursive"),
    x("/r", 200, True, ((XFF, "1.1.1.1, 2.2.2.2:99, 10.1.1.1"),), id="recursive-with-port"),
    x("/r", 200, True, ((XFF, "1.1.1.1,bogus, 10.1.1.1"),), id="recursive-stops-at-garbage"),
    x("/r", 200, True, ((XFF, "::1, ::ffff:10.0.0.1"),), id="recursive-mapped-ipv6"),
    x("/r", 200, True, ((XFF, "10.0.0.2, 10.0.0.1"),), id="recursive-all-trusted"),
    x("/r", 200, True, ((XFF, "10.0.0.2"), (XFF, "3.3.3.3")), id="two-fields"),
    x("/s", 200, True, (("X-Real-IP", "3.3.3.3"),), id="x-real-ip"),
    x("/s", 200, True, (("X-Real-IP", "3.3.3.3:88"),), id="x-real-ip-port"),
    x("/s0", 200, True, (("X-Real-IP", "bogus"),), id="x-real-ip-garbage"),
    x("/s", 200, True, (("X-Real-IP", "[::5]:77"),), id="x-real-ip-ipv6-port"),
    x("/s", 200, True, (("X-Real-IP", "3.3.3.3,4.4.4.4"),), id="x-real-ip-list"),
    x("/s0", 200, True, id="no-field"),
    x("/t", 200, True, ((XFF, "1.1.1.1, 2.2.2.2, 10.1.1.1"),), id="not-recursive-takes-last"),
    x("/u", 403, False, ((XFF, "1.2.3.4"),), id="deny-uses-real-ip"),
    x("/v", 200, True, (("X-My", "5.5.5.5, 6.6.6.6"),), id="other-field"),
    x("/w", 200, True, (("X-Real-IP", "3.3.3.3"),), id="untrusted-sender"),
    x("/x", 200, False, ((XFF, "7.7.7.7"),), port=2, id="server-level-realip-before-rewrite"),
    x("/deny", 403, False, ((XFF, "5.5.5.5"),), port=2, id="server-level-realip-deny"),
))
def test_access_and_realip(differ, req):
    """allow/deny (first match, inheritance) and realip's address replacement."""
    differ(ACCESS).check(req)

"""Server selection and location matching, compiled once per config.

Owns: ``RouteTable`` (listen address -> ``ServerGroup``), server selection
by ``server_name``, and the location tree of each server.

Location matching follows ngx_http_core_find_location::

    find(level, uri):
      1. exact ("= uri") equal to uri            -> that location, stop
      2. longest prefix ("uri", "^~ uri")        -> remember it; if it has
         nested locations, find(nested, uri):
           stop if the nested search stopped
      3. a prefix or exact location "uri/" with proxy_pass, where the
         request lacks the slash (auto_redirect)   -> 301 uri/, stop
      4. unless the prefix of step 2 is "^~":
         regexes ("~", "~*") of this level in file order: first match
         -> that location; then find(its nested, uri); stop
      5. else the prefix of step 2 (or nothing: 404)

    A "^~" only stops the regexes of its own level: a nested "^~" still
    lets the outer level's regexes run. Exact and prefix locations nested
    in a regex location are accepted but never matched, because nginx
    builds no static tree below a regex location; only the nested regexes
    are searched there.

Server selection follows ngx_http_find_virtual_server: exact name, then the
longest "*.name" wildcard, then the longest "name.*" wildcard, then the
first matching regex in file order, else the default server of the
address (``default_server``, or the first server listening there).

Input: ``Config`` at load time; (local address, Host, URI) per request.
Output: ``ServerConf`` / ``LocationConf`` and regex matches.
Must not: do I/O or import asyncio/aiohttp.
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass, field

from pyngx.config.model import Config, LocationConf, ServerConf
from pyngx.config.regex import compile_server_regex

# Results of a level search (nginx: NGX_OK, NGX_DONE, NGX_AGAIN, NGX_DECLINED).
OK, REDIRECT, AGAIN, DECLINED = "ok", "redirect", "again", "declined"


@dataclass(slots=True)
class LocationLevel:
    """The locations directly inside one server or location, compiled."""

    exact: dict[str, LocationConf] = field(default_factory=dict)
    prefixes: list[tuple[str, LocationConf, LocationLevel]] = field(default_factory=list)
    auto_redirect: dict[str, LocationConf] = field(default_factory=dict)
    regexes: list[tuple[re.Pattern[str], LocationConf, LocationLevel]] = field(default_factory=list)

    @classmethod
    def compile(cls, conf: LocationConf) -> LocationLevel:
        """Compile the nested locations of ``conf`` (recursively).

        Below a regex location only regexes are kept (see the module doc;
        nginx: ngx_http_init_static_location_trees skips regex locations).

        A static location (exact or prefix) whose name ends with "/" and that
        has proxy_pass gives the name without the slash an auto-redirect; an
        exact location of that name takes the request, as it shares nginx's
        tree node with the prefix one.

        Source: nginx src/http/ngx_http.c, ngx_http_create_locations_tree
        (node->auto_redirect); ngx_http_proxy_module.c, ngx_http_proxy_pass.
        """
        level = cls()
        redirects: list[str] = []
        static = conf.modifier not in ("~", "~*")
        for loc in conf.locations:
            if loc.modifier in ("=", "", "^~") and not static:
                continue
            if loc.modifier == "=":
                level.exact[loc.name] = loc
            elif loc.modifier in ("", "^~"):
                level.prefixes.append((loc.name, loc, cls.compile(loc)))
            elif loc.modifier in ("~", "~*"):
                assert loc.regex is not None
                level.regexes.append((loc.regex, loc, cls.compile(loc)))
            if loc.modifier in ("=", "", "^~") and loc.name.endswith("/") and loc.proxy_pass is not None:
                redirects.append(loc.name)
        prefix_of = {name: loc for name, loc, _ in level.prefixes}
        for name in redirects:
            level.auto_redirect[name[:-1]] = level.exact.get(name) or prefix_of[name]
        level.prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        return level

    def find(self, uri: str) -> tuple[str, LocationConf | None, re.Match[str] | None]:
        """Find the location for ``uri`` at this level and below.

        Returns:
            (result, location or None, regex match or None); result is
            OK (stop), REDIRECT (301 to uri + "/"), AGAIN (a prefix matched)
            or DECLINED (nothing matched).
        """
        loc = self.exact.get(uri)
        if loc is not None:
            return OK, loc, None
        rc, found, match = DECLINED, None, None
        noregex = False
        for prefix, ploc, nested in self.prefixes:
            if uri.startswith(prefix):
                if len(prefix) < len(uri) and uri in self.auto_redirect:
                    return REDIRECT, self.auto_redirect[uri], None
                rc, found, noregex = AGAIN, ploc, ploc.modifier == "^~"
                nrc, nloc, nmatch = nested.find(uri)
                if nrc in (OK, REDIRECT):
                    return nrc, nloc, nmatch
                if nloc is not None:
                    found, match = nloc, nmatch
                break
        else:
            if uri in self.auto_redirect:
                return REDIRECT, self.auto_redirect[uri], None
        if not noregex:
            for regex, rloc, nested in self.regexes:
                m = regex.search(uri)
                if m is not None:
                    nrc, nloc, nmatch = nested.find(uri)
                    if nloc is not None and nrc != DECLINED:
                        return OK, nloc, nmatch or m
                    return OK, rloc, m
        return rc, found, match


@dataclass(slots=True)
class ServerGroup:
    """The servers that share one listen address."""

    default: ServerConf
    exact: dict[str, ServerConf] = field(default_factory=dict)
    head: list[tuple[str, ServerConf]] = field(default_factory=list)  # "*.x.com" -> ".x.com"
    tail: list[tuple[str, ServerConf]] = field(default_factory=list)  # "x.*" -> "x."
    regexes: list[tuple[re.Pattern[str], ServerConf]] = field(default_factory=list)

    def add(self, srv: ServerConf) -> None:
        """Index the names of ``srv`` (a name another server took first is ignored)."""
        for name in srv.server_names:
            if name.startswith("~"):
                self.regexes.append((compile_server_regex(name), srv))
            elif name.startswith("*."):
                self.head.append((name[1:], srv))
            elif name.startswith("."):
                self.head.append((name, srv))
                self.exact.setdefault(name[1:], srv)
            elif name.endswith(".*"):
                self.tail.append((name[:-1], srv))
            else:
                self.exact.setdefault(name, srv)

    def finish(self) -> None:
        self.head.sort(key=lambda item: len(item[0]), reverse=True)
        self.tail.sort(key=lambda item: len(item[0]), reverse=True)

    def find(self, host: str) -> tuple[ServerConf, re.Match[str] | None]:
        """Pick the server for ``host`` (already lower-cased, without port)."""
        srv = self.exact.get(host)
        if srv is not None:
            return srv, None
        if host:
            for suffix, srv in self.head:
                if host.endswith(suffix):
                    return srv, None
            for prefix, srv in self.tail:
                if host.startswith(prefix) and len(host) > len(prefix):
                    return srv, None
            for regex, srv in self.regexes:
                m = regex.search(host)
                if m is not None:
                    return srv, m
        return self.default, None


class RouteTable:
    """Every listen address's servers, and every server's location tree.

    Built once per config; requests only look things up.
    """

    def __init__(self, config: Config) -> None:
        self.groups: dict[tuple[str, int], ServerGroup] = {}
        self.levels: dict[int, LocationLevel] = {}
        #: id(server) -> "@name" -> named location (the first of a name wins).
        self.named: dict[int, dict[str, LocationConf]] = {}
        servers = config.http.servers if config.http is not None else ()
        added: set[tuple[tuple[str, int], int]] = set()
        for srv in servers:
            self.levels[id(srv)] = LocationLevel.compile(srv.conf)
            named = self.named[id(srv)] = {}
            for loc in srv.conf.locations:
                if loc.modifier == "@":
                    named.setdefault(loc.name, loc)
            for lst in srv.listens:
                group = self.groups.get(lst.address)
                if group is None:
                    group = self.groups[lst.address] = ServerGroup(srv)
                if lst.default_server:
                    group.default = srv
                if (lst.address, id(srv)) not in added:
                    added.add((lst.address, id(srv)))
                    group.add(srv)
        for group in self.groups.values():
            group.finish()
        self._unix = next((g for (h, _), g in self.groups.items() if h.startswith("unix:")), None)

    def group(self, local: tuple[str, int] | None) -> ServerGroup | None:
        """The server group for the socket that accepted a connection.

        Args:
            local: (ip, port) of the local end, or None for UNIX sockets.
        """
        if local is None:
            return self._unix
        ip, port = local[0], local[1]
        group = self.groups.get((ip, port))
        if group is not None:
            return group
        if ip.startswith("::ffff:"):
            group = self.groups.get((ip[7:], port))
            if group is not None:
                return group
        return self.groups.get(("::" if ":" in ip and not ip.startswith("::ffff:") else "0.0.0.0", port)) or (
            self.groups.get(("::", port))
        )

    def location(self, srv: ServerConf, uri: str) -> tuple[str, LocationConf | None, re.Match[str] | None]:
        """Find the location of ``srv`` for the normalized ``uri`` (see module doc)."""
        return self.levels[id(srv)].find(uri)

    def named_location(self, srv: ServerConf, name: str) -> LocationConf | None:
        """The location ``@name`` of ``srv`` (named locations are server-level only)."""
        return self.named[id(srv)].get(name)


# nginx lower-cases ASCII letters only (ngx_strlow); other bytes stay.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


@functools.lru_cache(maxsize=1024)
def parse_host(value: str) -> str | None:
    """Validate and normalize a Host header as ngx_http_validate_host does.

    The host ends at the first ":" (the port is not checked), or after
    "]" for a "[literal]". Two dots in a row, "/", NUL, control characters,
    spaces and DEL make it invalid, as does an empty host (an empty header,
    ":80", "."). One trailing dot is removed; letters are lower-cased.
    Results are cached (1024 values): clients send the same few hosts.

    Args:
        value: the Host header's value (an absent header is the caller's
            case: it selects servers named "").

    Returns:
        The lower-cased host without port and trailing dot, or None when
        the host is invalid (nginx answers 400).

    Source: nginx src/http/ngx_http_request.c, ngx_http_validate_host.
    """
    dot_pos = -2
    host_len = len(value)
    state = "usual"
    for i, ch in enumerate(value):
        if ch == ".":
            if dot_pos == i - 1:
                return None
            dot_pos = i
        elif ch == ":":
            if state == "usual":
                host_len, state = i, "rest"
        elif ch == "[":
            if i == 0:
                state = "literal"
        elif ch == "]":
            if state == "literal":
                host_len, state = i + 1, "rest"
        elif ch == "/" or ch <= " " or ch == "\x7f":
            return None
    if dot_pos == host_len - 1:
        host_len -= 1
    if host_len <= 0:
        return None
    return value[:host_len].translate(_ASCII_LOWER)

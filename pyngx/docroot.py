"""The file name of a URI: root, alias, and the guard that keeps it inside them.

Owns: ``map_uri`` (the request's URI -> its file name under the location's
``root`` or ``alias``; nginx's ngx_http_map_uri_to_path), the root or alias
path of a request (variables rendered, relative paths from the main config
file's directory), the directory a file name must stay inside
(``inside``), and try_files' alias rule (``alias_name``,
``ADD_URI_TO_ALIAS``).

Input: the request and its location (``DocRoot``). Output: path strings.
Must not: open or stat files (static.py and fileio.py do).

Source: nginx src/http/ngx_http_core_module.c (ngx_http_map_uri_to_path,
ngx_http_core_try_files_phase); nginx docs: ngx_http_core_module, root, alias.

Differs from nginx: a file name that would leave the root or alias path
through a ".." segment is refused (static.py answers 404), where nginx opens it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pyngx.config.model import DocRoot, LocationConf
from pyngx.request import Request

__all__ = ["ADD_URI_TO_ALIAS", "alias_name", "config_base", "inside", "limit_path", "map_uri", "root_path"]

# A key no variable name can be: try_files matched a file in a regex location
# with alias, so the URI goes under the alias (nginx: r->add_uri_to_alias).
ADD_URI_TO_ALIAS = "try_files: add_uri_to_alias"


@functools.lru_cache(maxsize=16)
def config_base(config_path: Path) -> str:
    """The directory relative root and alias paths start from: the main config file's."""
    return os.path.abspath(config_path.parent)


def root_path(req: Request, doc: DocRoot, base: str) -> str:
    """The root or alias path for this request (variables rendered, made absolute)."""
    path = doc.path.render(req)
    if not path.startswith("/"):
        path = os.path.join(base, path)
    # nginx keeps root without its trailing "/": root + URI has one slash.
    return path if doc.alias else path.rstrip("/")


def limit_path(req: Request, doc: DocRoot, root: str, base: str) -> str:
    """The directory a file name must stay inside: the root or alias path;
    for an alias with variables in a regex location, its constant start."""
    if doc.strip >= 0 or doc.path.constant is not None:
        return root
    first = doc.path.parts[0] if doc.path.parts else ""
    text = first if isinstance(first, str) else ""
    text = text[: text.rfind("/") + 1]
    return os.path.join(base, text) if text and not text.startswith("/") else text


def inside(path: str, limit: str) -> bool:
    """``path`` does not leave ``limit`` through a ".." segment (symbolic links are not looked at)."""
    if "/../" not in path + "/" or not limit:
        return True
    top = os.path.normpath(limit)
    name = os.path.normpath(path)
    return top == "/" or name == top or name.startswith(top + "/")


def map_uri(req: Request, loc: LocationConf, base: str) -> tuple[str, str] | None:
    """The file name of the request's URI and the directory it must stay in.

    Returns:
        (file name, limit), or None for an alias in a location whose URI a
        rewrite changed (nginx then logs an alert and answers 500).

    Source: nginx src/http/ngx_http_core_module.c, ngx_http_map_uri_to_path.
    """
    doc = loc.root
    if doc.alias and not req.valid_location:
        return None
    root = root_path(req, doc, base)
    limit = limit_path(req, doc, root, base)
    if not doc.alias:
        return root + req.uri, limit
    if doc.strip < 0:  # a regex location: the alias is the whole name
        return (root + req.uri if req.variables.get(ADD_URI_TO_ALIAS) else root), limit
    return root + req.uri[doc.strip :], limit


def alias_name(req: Request, doc: DocRoot, name: str, has_variables: bool) -> str:
    """A try_files name with variables loses the location's name under an
    alias in a prefix location (as nginx: only names with variables)."""
    if doc.alias and doc.strip > 0 and has_variables and name.startswith(req.uri[: doc.strip]):
        return name[doc.strip :]
    return name

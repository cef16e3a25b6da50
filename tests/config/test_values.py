"""Tests for pyngx.config.values: nginx notation -> typed values.

Accepted and refused inputs, and the error wording, follow nginx 1.22
(ngx_parse_time, ngx_parse_size, ngx_conf_set_flag_slot, the listen and
proxy_pass handlers, checked with ``nginx -t``).
"""

from __future__ import annotations

import pytest

from pyngx.config.values import (
    Listen,
    ProxyPass,
    parse_flag,
    parse_int,
    parse_listen,
    parse_proxy_pass,
    parse_size,
    parse_time,
)
from pyngx.errors import ConfigValueError


class TestParseTime:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("30s", 30.0),
            ("1m", 60.0),
            ("500ms", 0.5),
            ("1h30m", 5400.0),
            ("1h 30m", 5400.0),
            ("75", 75.0),
            ("0", 0.0),
            ("1m30", 90.0),
            ("1s30", 31.0),
            ("2d", 172800.0),
            ("1w", 604800.0),
            ("1d1h1m1s1ms", 90061.001),
            ("1h ", 3600.0),
        ],
    )
    def test_valid(self, text: str, seconds: float) -> None:
        """Units combine largest first; a bare number is seconds."""
        assert parse_time(text, "proxy_read_timeout") == pytest.approx(seconds)

    @pytest.mark.parametrize(
        "text",
        ["", "abc", "s", "1x", "-1", "1.5s", "1s1s", "30m1h", "1ms1s", "1 h", "1S", "1D", "1y", "1M",
         "9223372036854775807"],
    )
    def test_invalid(self, text: str) -> None:
        """Unknown or repeated or out-of-order units, and y/M in msec directives, are invalid."""
        with pytest.raises(ConfigValueError) as info:
            parse_time(text, "proxy_read_timeout")
        assert info.value.message == '"proxy_read_timeout" directive invalid value'

    def test_sec_slot_takes_years_and_refuses_ms(self) -> None:
        """With is_sec, "1y" and "1M" are valid and "ms" is not, as ngx_conf_set_sec_slot."""
        assert parse_time("1y1M", "x", is_sec=True) == 31536000 + 2592000
        with pytest.raises(ConfigValueError):
            parse_time("500ms", "x", is_sec=True)


class TestParseSize:
    @pytest.mark.parametrize(
        ("text", "size"),
        [("512", 512), ("8k", 8192), ("8K", 8192), ("1m", 1048576), ("1M", 1048576), ("2g", 2 * 1024**3), ("0", 0)],
    )
    def test_valid(self, text: str, size: int) -> None:
        """k, m and g (either case) multiply by powers of 1024."""
        assert parse_size(text, "client_max_body_size") == size

    @pytest.mark.parametrize("text", ["", "k", "1kb", "1.5m", "-1", "1t", "99999999999999999999"])
    def test_invalid(self, text: str) -> None:
        """Anything but digits and one unit letter is invalid."""
        with pytest.raises(ConfigValueError) as info:
            parse_size(text, "client_max_body_size")
        assert info.value.message == '"client_max_body_size" directive invalid value'


class TestParseFlag:
    @pytest.mark.parametrize(("text", "value"), [("on", True), ("off", False), ("ON", True), ("Off", False)])
    def test_valid(self, text: str, value: bool) -> None:
        """on and off, in any case."""
        assert parse_flag(text, "server_tokens") is value

    @pytest.mark.parametrize("text", ["yes", "1", "", "true"])
    def test_invalid(self, text: str) -> None:
        """Anything else gets ngx_conf_set_flag_slot's message."""
        with pytest.raises(ConfigValueError) as info:
            parse_flag(text, "daemon")
        assert info.value.message == f'invalid value "{text}" in "daemon" directive, it must be "on" or "off"'


class TestParseInt:
    def test_valid_and_invalid(self) -> None:
        """Decimal digits only; anything else gets ngx_conf_set_num_slot's message."""
        assert parse_int("512", "worker_connections") == 512
        for bad in ("x", "-1", "1.0", "²"):
            with pytest.raises(ConfigValueError) as info:
                parse_int(bad, "keepalive_requests")
            assert info.value.message == '"keepalive_requests" directive invalid number'


class TestParseListen:
    @pytest.mark.parametrize(
        ("args", "host", "port"),
        [
            (("8080",), "0.0.0.0", 8080),
            (("127.0.0.1:8080",), "127.0.0.1", 8080),
            (("127.0.0.1",), "127.0.0.1", 80),
            (("*:80",), "0.0.0.0", 80),
            (("*",), "0.0.0.0", 80),
            (("[::]:8080",), "::", 8080),
            (("[::1]:8080",), "::1", 8080),
            (("[::1]",), "::1", 80),
            (("localhost:8081",), "127.0.0.1", 8081),
            (("unix:/run/pyngx.sock",), "unix:/run/pyngx.sock", 0),
        ],
    )
    def test_address_forms(self, args: tuple[str, ...], host: str, port: int) -> None:
        """Port, address:port, *, [v6]:port, localhost and unix: all parse."""
        lst = parse_listen(args)
        assert (lst.host, lst.port, lst.default_server) == (host, port, False)

    def test_str_is_nginx_address_text(self) -> None:
        """str() gives the address as nginx prints it in messages."""
        assert [str(parse_listen((a,))) for a in ("80", "[::]:80", "unix:/x.sock")] == ["0.0.0.0:80", "[::]:80", "unix:/x.sock"]

    def test_parameters(self) -> None:
        """default_server (or "default"), backlog=, reuseport and ipv6only= are kept."""
        lst = parse_listen(("[::]:80", "default_server", "backlog=511", "reuseport", "ipv6only=off"))
        assert lst == Listen("::", 80, True, 511, False, True, options=True)
        assert parse_listen(("80", "default")).default_server
        assert not parse_listen(("80", "default_server")).options

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("0",), 'invalid port in "0" of the "listen" directive'),
            (("65536",), 'invalid port in "65536" of the "listen" directive'),
            (("*:abc",), 'invalid port in "*:abc" of the "listen" directive'),
            (("127.0.0.1:",), 'invalid port in "127.0.0.1:" of the "listen" directive'),
            (("127.0.0.1:0",), 'invalid port in "127.0.0.1:0" of the "listen" directive'),
            (("[::1]:99999",), 'invalid port in "[::1]:99999" of the "listen" directive'),
            ((":80",), 'no host in ":80" of the "listen" directive'),
            (("[::1",), 'invalid host in "[::1" of the "listen" directive'),
            (("[zz]:80",), 'invalid IPv6 address in "[zz]:80" of the "listen" directive'),
            (("unix:",), 'no path in the unix domain socket in "unix:" of the "listen" directive'),
            (("80", "foo"), 'invalid parameter "foo"'),
            (("80", "backlog=abc"), 'invalid backlog "backlog=abc"'),
            (("80", "backlog=0"), 'invalid backlog "backlog=0"'),
        ],
    )
    def test_invalid(self, args: tuple[str, ...], message: str) -> None:
        """Bad ports, hosts and parameters get nginx's messages."""
        with pytest.raises(ConfigValueError) as info:
            parse_listen(args)
        assert info.value.message == message

    @pytest.mark.parametrize("param", ["quic", "http3", "proxy_protocol", "fastopen=3", "so_keepalive=on"])
    def test_unsupported_parameters(self, param: str) -> None:
        """Real nginx parameters that pyngx lacks are refused by name."""
        with pytest.raises(ConfigValueError) as info:
            parse_listen(("443", param))
        assert info.value.message == f'the "{param}" parameter of the "listen" directive is not supported by pyngx'


class TestParseProxyPass:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("http://127.0.0.1:8080", ProxyPass("http", "127.0.0.1", 8080, None, False, "http://127.0.0.1:8080", True)),
            ("http://backend", ProxyPass("http", "backend", 80, None, False, "http://backend")),
            ("http://backend/", ProxyPass("http", "backend", 80, "/", False, "http://backend/")),
            ("http://b:81/v1/", ProxyPass("http", "b", 81, "/v1/", False, "http://b:81/v1/", True)),
            ("https://b", ProxyPass("https", "b", 443, None, False, "https://b")),
            ("HTTPS://b:8443/x", ProxyPass("https", "b", 8443, "/x", False, "HTTPS://b:8443/x", True)),
            ("http://[::1]:8080/a", ProxyPass("http", "::1", 8080, "/a", False, "http://[::1]:8080/a", True)),
            ("http://[::1]", ProxyPass("http", "::1", 80, None, False, "http://[::1]")),
            ("http://unix:/tmp/b.sock", ProxyPass("http", "/tmp/b.sock", 0, None, True, "http://unix:/tmp/b.sock")),
            ("http://unix:/tmp/b.sock:/api/", ProxyPass("http", "/tmp/b.sock", 0, "/api/", True, "http://unix:/tmp/b.sock:/api/")),
        ],
    )
    def test_forms(self, url: str, expected: ProxyPass) -> None:
        """Scheme, host, port and the optional URI part are split once."""
        assert parse_proxy_pass(url) == expected

    def test_proxy_host_and_origin(self) -> None:
        """$proxy_host omits the default port; origin always has one."""
        assert parse_proxy_pass("http://b").proxy_host == "b"
        assert parse_proxy_pass("http://b:81").proxy_host == "b:81"
        assert parse_proxy_pass("https://[::1]:443/").proxy_host == "[::1]"
        assert parse_proxy_pass("http://[::1]:81").origin == "http://[::1]:81"
        assert parse_proxy_pass("http://unix:/s.sock").proxy_host == "localhost"

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("ftp://x", "invalid URL prefix"),
            ("backend", "invalid URL prefix"),
            ("http:/x", "invalid URL prefix"),
            ("http://", 'no host in upstream ""'),
            ("http://x:abc", 'invalid port in upstream "x:abc"'),
            ("http://x:0/", 'invalid port in upstream "x:0/"'),
            ("http://[::1", 'invalid host in upstream "[::1"'),
            ("http://unix:", 'no path in the unix domain socket in upstream "unix:"'),
        ],
    )
    def test_invalid(self, url: str, message: str) -> None:
        """Other schemes, missing hosts and bad ports get nginx's messages."""
        with pytest.raises(ConfigValueError) as info:
            parse_proxy_pass(url)
        assert info.value.message == message

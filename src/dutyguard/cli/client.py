"""The CLI's HTTP client for the control plane API.

Where the server and the token come from, in order: ``--url`` flag, ``DUTYGUARD_URL``, the
file written by ``dutyguard login``, then ``http://127.0.0.1:8080``; ``DUTYGUARD_TOKEN``, then
that file. The file lives in the user's config directory with mode 0600. Tokens are never
taken from a flag (they would show in ``ps`` and shell history).

Errors of the API (RFC 9457 problem+json) become :class:`ApiError`, whose diagnostics name
the problem type and each offending field; the CLI turns them into exit code 2.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dutyguard.errors import ConfigError, DutyguardError

DEFAULT_URL = "http://127.0.0.1:8080"
API = "/api/v1"


class ApiError(DutyguardError):
    """The API refused a request or could not be reached."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        super().__init__(self.diagnostics())

    @property
    def kind(self) -> str:
        return str(self.problem.get("type", "")).rsplit(":", 1)[-1]

    def diagnostics(self) -> str:
        title = self.problem.get("title") or "request failed"
        detail = self.problem.get("detail") or ""
        # Status 0: no HTTP answer at all (unreachable, a broken download): no number to show.
        status = f"{self.status} " if self.status else ""
        lines = [f"{status}{title}: {detail}".rstrip(": ")]
        if self.problem.get("type"):
            lines[0] += f" [{self.kind}]"
        for err in self.problem.get("errors") or ():
            if isinstance(err, Mapping):
                lines.append(f"  {err.get('field', '?')}: {err.get('message', '')}")
        for key in ("conflicts", "code"):
            if key in self.problem:
                lines.append(f"  {key}: {json.dumps(self.problem[key], sort_keys=True)}")
        return "\n".join(lines)


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dutyguard"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


@dataclass(frozen=True, slots=True)
class Credentials:
    url: str
    token: str | None


def save_credentials(url: str, token: str, path: Path | None = None) -> Path:
    """Write the login file 0600 (created that way: never world-readable, not even briefly)."""
    path = path or credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    if tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"url": url, "token": token}, f)
    os.replace(tmp, path)
    return path


def _load_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path}: credentials are readable by others (mode {mode:o}); chmod 600 it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable credentials file ({e}); run dutyguard login again") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: unreadable credentials file; run dutyguard login again")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def resolve(url_flag: str | None = None, env: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if env is None else env
    stored = _load_file(credentials_path())
    url = url_flag or env.get("DUTYGUARD_URL") or stored.get("url") or DEFAULT_URL
    token = env.get("DUTYGUARD_TOKEN") or stored.get("token")
    return Credentials(url=url.rstrip("/"), token=token or None)


def _is_loopback(host: str | None) -> bool:
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class Client:
    def __init__(self, creds: Credentials, timeout_s: float = 30.0) -> None:
        import httpx

        parts = urlsplit(creds.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"server URL {creds.url!r} is not an http(s) URL")
        if parts.scheme == "http" and not _is_loopback(parts.hostname) and creds.token:
            print(
                f"dutyguard: warning: sending a token to {parts.hostname} over plain HTTP",
                file=sys.stderr,
            )
        headers = {"Accept": "application/json", "User-Agent": "dutyguard-cli"}
        if creds.token:
            headers["Authorization"] = f"Bearer {creds.token}"
        self.url = creds.url
        self._http = httpx.Client(
            base_url=creds.url + API, headers=headers, timeout=timeout_s, follow_redirects=False
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        import httpx

        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._http.request(method, path, json=json_body, params=clean)
        except httpx.HTTPError as e:
            raise ApiError(
                0, {"title": "cannot reach the control plane", "detail": f"{self.url}: {e}"}
            ) from e
        return self._decode(resp)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self.request("POST", path, json_body=body or {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def paginate(self, path: str, **params: Any) -> Iterator[Any]:
        """Every item of a paginated collection, following ``next_cursor``."""
        cursor: str | None = None
        while True:
            page = self.get(path, **params, cursor=cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def stream_to(self, path: str, out: Path) -> int:
        """Download ``path`` into ``out`` (written atomically); returns the byte count."""
        import httpx

        tmp = out.with_name(out.name + ".part")
        n = 0
        try:
            with self._http.stream("GET", path) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._decode(resp)
                with tmp.open("wb") as f:
                    for chunk in resp.iter_bytes():
                        f.write(chunk)
                        n += len(chunk)
        except httpx.HTTPError as e:
            tmp.unlink(missing_ok=True)
            raise ApiError(0, {"title": "download failed", "detail": f"{self.url}: {e}"}) from e
        os.replace(tmp, out)
        return n

    @staticmethod
    def _decode(resp: Any) -> Any:
        if resp.status_code == 204:
            return None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code >= 400:
            if not isinstance(data, dict):
                data = {"title": resp.reason_phrase, "detail": resp.text[:500]}
            raise ApiError(resp.status_code, data)
        if data is None:
            raise ApiError(resp.status_code, {"title": "unexpected response", "detail": resp.text[:500]})
        return data

"""The MLflow tracking URI: parsed and checked once, asked what kind of store it names.

Every package takes a tracking URI as a string from the user (a flag, an env file, a
pipeline parameter) and turns it into a ``TrackingUri`` at its edge: training, evaluation
and replay (``RunTracker``, ``replay``), the report (``reporting``), the command lines and
the Vertex environment files (``pipelines``). Standard library only.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse

SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")
_SQLITE = "sqlite:///"


@dataclasses.dataclass(frozen=True)
class TrackingUri:
    """A checked MLflow tracking URI ("" means tracking is off)."""

    uri: str

    def __post_init__(self):
        if self.uri:
            _check(self.uri)

    def __str__(self) -> str:
        return self.uri

    @property
    def scheme(self) -> str:
        """The store's kind: ``sqlite``, ``https``, ``postgresql`` (driver suffix removed)."""
        return urllib.parse.urlsplit(self.uri).scheme.split("+", 1)[0].lower()

    @property
    def is_server(self) -> bool:
        """Whether the URI names a tracking server (http or https), not a store it opens."""
        return self.scheme in ("http", "https")

    @property
    def sqlite_path(self) -> str | None:
        """The absolute database path of an embedded SQLite store; None for other stores."""
        if self.scheme != "sqlite":
            return None
        return os.path.abspath(self.uri[len(_SQLITE) :])

    @property
    def default_artifact_location(self) -> str | None:
        """Artifact root for a new experiment of an embedded store: beside the SQLite file.

        Other stores (a server, a file store) decide their own artifact root: None.
        """
        path = self.sqlite_path
        return (
            None if path is None else "file://" + os.path.join(os.path.dirname(path), "artifacts")
        )

    @property
    def redacted(self) -> str:
        """The URI fit to print and show in a report: user info and query string removed."""
        parts = urllib.parse.urlsplit(self.uri)
        if parts.netloc and "@" in parts.netloc:
            parts = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1])
        return urllib.parse.urlunsplit(parts._replace(query="", fragment=""))


def _check(uri: str) -> None:
    # Raises ValueError naming what is wrong with a non-empty URI.
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.split("+", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"unsupported MLflow tracking URI {uri!r}: the scheme must be one of "
            f"{', '.join(s + '://' for s in SCHEMES)} (e.g. http://127.0.0.1:5000 or "
            "sqlite:///mlruns.db)"
        )
    if scheme in ("http", "https"):
        if not parsed.hostname:
            raise ValueError(f"malformed MLflow tracking URI {uri!r}: no host name")
        try:
            parsed.port  # noqa: B018 - raises ValueError on a non-numeric port
        except ValueError as err:
            raise ValueError(f"malformed MLflow tracking URI {uri!r}: {err}") from None
    if scheme == "sqlite" and not uri.startswith(_SQLITE):
        raise ValueError(
            f"malformed MLflow tracking URI {uri!r}: a SQLite store is sqlite:///relative/path "
            "or sqlite:////absolute/path"
        )

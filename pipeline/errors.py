"""Our own exceptions: each names the input it concerns and says how to fix it.

The command line prints ``str(error)`` as one line and exits non-zero; a traceback is
shown only with ``--debug``.
"""

from __future__ import annotations


class NightlightsError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = 2


class ConfigError(NightlightsError):
    """A configuration file or option is wrong."""


class SiteError(NightlightsError):
    """A site (AOI) file cannot be used."""


class SourceError(NightlightsError):
    """Raster inputs are missing, unreadable or inconsistent."""


class DownloadError(SourceError):
    """A download failed after its retries."""


class AuthError(DownloadError):
    """Credentials are missing, wrong or expired."""


class ComparisonError(NightlightsError):
    """The treated-versus-control comparison (``compare``) cannot be made with this input."""


class ClaimError(NightlightsError):
    """A claim file cannot be used, or does not fit the sites of the run."""


class BoundaryError(NightlightsError):
    """A boundary (county or province) file cannot be used."""

"""serverlord: a self-hosted monitor for scheduled jobs."""

__version__ = "0.1.0"

COMMIT_FILE = "commit.txt"
"""Data file the executable's build puts beside the package: the source commit."""


def version_text() -> str:
    """``serverlord VERSION``, and the commit a built executable was made from.

    serverlord.spec writes the commit into the executable; an installed package
    has no such file and says its version only.
    """
    from importlib import resources

    try:
        commit = resources.files(__name__).joinpath(COMMIT_FILE).read_text("utf-8")
    except OSError:
        return f"serverlord {__version__}"
    return f"serverlord {__version__} (commit {commit.strip()})"

"""The package's version, in a leaf module that anything (run records, ``--version``) can import."""

__version__ = "0.1.0"

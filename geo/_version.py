# The one place the version is written (pyproject.toml reads it): no importlib.metadata at start-up,
# and the same answer from an installed package and from a source tree.
__version__ = "0.1.0"

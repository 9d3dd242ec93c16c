"""Unit tests of the node pack (a package, so its conftest keeps its own module name)."""

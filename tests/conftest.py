"""Shared test configuration. Its folder (tests/) is on sys.path, so test modules import `compiler_helpers`."""

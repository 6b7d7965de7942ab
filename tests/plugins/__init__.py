"""Extractor plugins for the parse tests, loaded by their `package.module:function` specs."""

"""BAT OS: a living object kernel whose prototypal objects live in a ZODB image."""

__version__ = "0.1.0"
